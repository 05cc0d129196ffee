package bench

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// GoalOrderedRate is issue 16's goal: ordered delivery (ordering: subject,
// 256 partitions) reaches at least half the unordered SETs/s.
const GoalOrderedRate = 0.5

// OrderingOptions configure Ordering.
type OrderingOptions struct {
	Pipeline   PipelineOptions
	N          int // intents per run
	Subjects   int // distinct subjects (default 10,000)
	Partitions int // the ordered receiver's partitions (default 256)
	Repeat     int // rounds, each running the three modes in turn
	// CPUProfile, when set, profiles each mode's first run into
	// CPUProfile + "." + mode.
	CPUProfile string
}

// Ordering measures, in the same process and alternating, three drains of
// N intents: unordered on the bare setrelay.intent (the path before
// per-subject ordering), unordered on the slot subjects producers now
// publish to, and ordered with Partitions partitions. It prints RESULT
// lines and COMPARE lines: ordered/unordered (goal >= GoalOrderedRate) and
// slotted/bare (the unordered path's cost of the slot subjects).
func Ordering(ctx context.Context, o OrderingOptions, out io.Writer) error {
	if o.N <= 0 {
		o.N = 20000
	}
	if o.Subjects <= 0 {
		o.Subjects = 10000
	}
	if o.Partitions <= 0 {
		o.Partitions = 256
	}
	o.Repeat = max(1, o.Repeat)
	modes := []struct {
		name string
		set  func(*PipelineOptions)
	}{
		{"unordered_bare", func(p *PipelineOptions) { p.Subjects, p.Partitions = 0, 0 }},
		{"unordered_slotted", func(p *PipelineOptions) { p.Subjects, p.Partitions = o.Subjects, 0 }},
		{"ordered", func(p *PipelineOptions) { p.Subjects, p.Partitions = o.Subjects, o.Partitions }},
	}
	results := map[string][]ThroughputResult{}
	for round := range o.Repeat {
		for _, m := range modes {
			popts := o.Pipeline
			m.set(&popts)
			prof := ""
			if o.CPUProfile != "" && round == 0 {
				prof = o.CPUProfile + "." + m.name
			}
			t, err := Throughput(ctx, popts, o.N, prof)
			if err != nil {
				return fmt.Errorf("bench: %s: %w", m.name, err)
			}
			fmt.Fprintf(out, "%s mode=%s subjects=%d partitions=%d\n", t, m.name, popts.Subjects, popts.Partitions)
			results[m.name] = append(results[m.name], t)
		}
	}
	rate := func(name string) float64 {
		return median(results[name], func(t ThroughputResult) float64 { return t.SetsPerSec })
	}
	foreign := 0.0
	for _, rs := range results {
		foreign = max(foreign, maxOf(rs, func(t ThroughputResult) float64 { return t.ForeignUtil }))
	}
	var failed []string
	ordered := rate("ordered") / rate("unordered_slotted")
	fmt.Fprintf(out, "COMPARE ordering ratio_sets_per_s(ordered/unordered)=%.2f ordered_sets_per_s=%.0f unordered_sets_per_s=%.0f partitions=%d foreign_cpu_util_max=%.2f%s\n",
		ordered, rate("ordered"), rate("unordered_slotted"), o.Partitions, foreign,
		goal(ordered >= GoalOrderedRate, fmt.Sprintf("ordered>=%.2fx", GoalOrderedRate), &failed))
	fmt.Fprintf(out, "COMPARE ordering ratio_sets_per_s(unordered slotted/bare)=%.2f bare_sets_per_s=%.0f\n",
		rate("unordered_slotted")/rate("unordered_bare"), rate("unordered_bare"))
	if len(failed) > 0 {
		fmt.Fprintf(out, "goals missed: %s (on a busy machine, check foreign_cpu_util first)\n", strings.Join(failed, ", "))
	}
	return nil
}
