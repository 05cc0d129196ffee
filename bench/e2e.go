// Package bench measures setrelay end to end against the plain hand-written
// pipeline in ../shared/bench/baseline, in the same run on the same
// machine: SETs per second and CPU time per delivered SET for each
// algorithm, publish-to-202 latency at a fixed rate, peak RSS, and RSS
// while a large backlog drains. 'setrelay bench' is its command line.
//
// setrelay runs in process, assembled by relay.Start as 'setrelay run'
// assembles it (validation, metrics, JSON info logging, OAuth token), with
// the embedded JetStream and a loopback receiver; the baseline runs as a
// subprocess in its own one-process mode, so both figures include the NATS
// server and the receiver.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/internal/gctune"
)

// Goals the comparison is reported against (issue 14). Every ratio is to
// the baseline measured in the same run, median against median.
const (
	GoalES256CPURatio = 0.9 // setrelay CPU per SET / baseline's, at most
	GoalRS256Rate     = 1.0 // setrelay SETs/s / baseline's, at least
	// At the latency phase's fixed rate: p99 at most the baseline's and
	// at most GoalP99; max at most GoalMaxRatio times the baseline's; CPU
	// per SET at most GoalLatencyCPURatio times the baseline's.
	GoalP99             = 5 * time.Millisecond
	GoalMaxRatio        = 2.0
	GoalLatencyCPURatio = 1.0
	// GoalScaleRatio: scale-out reaches at least this share of processes
	// × concurrency / receiver delay.
	GoalScaleRatio = 0.9
	// GoalBacklogRSSKB bounds the 'setrelay run' process's RSS while it
	// drains a backlog on an external server.
	GoalBacklogRSSKB = 64 * 1024
)

// Options configure Run.
type Options struct {
	// Algs are measured in turn (default ES256 and RS256).
	Algs []jose.SignatureAlgorithm
	// NoThroughput skips the throughput comparisons.
	NoThroughput bool
	// DefaultGC measures with Go's default GC pacing instead of the one
	// 'setrelay run' applies (internal/gctune), to show its effect.
	DefaultGC bool
	// N is how many intents each throughput run delivers, per algorithm;
	// RSA signing is about six times slower, so RS256 uses RSAN.
	N, RSAN int
	// Workers is setrelay's worker.concurrency and the baseline's -workers.
	Workers int
	// Repeat runs each comparison this many times, alternating baseline
	// and setrelay, so slow drifts in the machine's load hit both.
	Repeat int
	// BaselineDir holds the baseline module; empty or missing skips it.
	BaselineDir string
	// LatencyRate and LatencyDuration set the fixed-rate phase (ES256);
	// a zero rate skips it.
	LatencyRate     int
	LatencyDuration time.Duration
	// Backlog, when positive, pre-publishes that many intents and reports
	// memory while they drain.
	Backlog int
	Verify  bool
	// CPUProfile, when set, profiles setrelay's measured phases: one file
	// per algorithm (name.ES256.ext) when there are several, and the
	// latency phase into name.latency.ext.
	CPUProfile string
	// LatencyDump, when set, gets the first latency run's per-SET
	// publish times and latencies (see Latency).
	LatencyDump string
	// MemProfile, when set, gets a heap profile at the end of the backlog
	// drain.
	MemProfile string
	// Scale, when Processes is set, runs the scale-out measurement.
	Scale ScaleOptions
	// BacklogExternal, when positive, stores that many intents on a
	// separate nats-server and reports the RSS of one 'setrelay run'
	// process while it drains them.
	BacklogExternal int
	// LogOutput receives setrelay's JSON logs (nil: discarded).
	LogOutput io.Writer
}

// Run runs every measurement Options asks for and prints RESULT lines, then
// the comparison, to out. A missing baseline is reported and skipped.
func Run(ctx context.Context, o Options, out io.Writer) error {
	if len(o.Algs) == 0 {
		o.Algs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256}
	}
	if o.N <= 0 {
		o.N = 20000
	}
	if o.RSAN <= 0 {
		o.RSAN = max(1, o.N/5)
	}
	if o.Workers <= 0 {
		o.Workers = 64
	}
	o.Repeat = max(1, o.Repeat)
	if !o.DefaultGC {
		// The GC pacing 'setrelay run' applies (internal/gctune).
		gctx, stop := context.WithCancel(ctx)
		defer stop()
		go gctune.Run(gctx, gctune.DefaultHeadroom, time.Second)
	}

	var bin string
	if o.BaselineDir != "" {
		tmp, err := os.MkdirTemp("", "setrelay-bench-baseline-")
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		defer os.RemoveAll(tmp)
		bin, err = BuildBaseline(ctx, o.BaselineDir, tmp)
		switch {
		case errors.Is(err, ErrNoBaseline):
			fmt.Fprintf(out, "baseline: %v; comparison skipped (use --baseline-dir)\n", err)
		case err != nil:
			return err
		}
	} else {
		fmt.Fprintln(out, "baseline: no directory given; comparison skipped")
	}

	var summary []string
	var failed []string
	for _, alg := range o.Algs {
		if o.NoThroughput {
			break
		}
		n := o.N
		if strings.HasPrefix(string(alg), "RS") || strings.HasPrefix(string(alg), "PS") {
			n = o.RSAN
		}
		popts := PipelineOptions{Alg: alg, Workers: o.Workers, Verify: o.Verify, LogOutput: o.LogOutput}
		var ours []ThroughputResult
		var base []BaselineResult
		for r := 0; r < o.Repeat; r++ {
			if bin != "" {
				b, err := RunBaseline(ctx, bin, string(alg), o.Workers, n)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%s peak_rss_kb=%d\n", b.Line, b.PeakRSSKB)
				base = append(base, b)
			}
			prof := ""
			if o.CPUProfile != "" && r == 0 {
				prof = profileName(o.CPUProfile, alg, len(o.Algs) > 1)
			}
			t, err := Throughput(ctx, popts, n, prof)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, t)
			ours = append(ours, t)
		}
		if len(base) == 0 {
			continue
		}
		ourCPU, baseCPU := func(t ThroughputResult) float64 { return t.CPUPerSetUS }, func(b BaselineResult) float64 { return b.CPUPerSetUS }
		ourRate, baseRate := func(t ThroughputResult) float64 { return t.SetsPerSec }, func(b BaselineResult) float64 { return b.SetsPerSec }
		cpuR, rateR := pairedMedian(ours, base, ourCPU, baseCPU), pairedMedian(ours, base, ourRate, baseRate)
		line := fmt.Sprintf("COMPARE alg=%s ratio_cpu_per_set(setrelay/baseline)=%.2f ratio_sets_per_s(setrelay/baseline)=%.2f of_medians_cpu=%.2f of_medians_sets_per_s=%.2f foreign_cpu_util_max=%.2f",
			alg, cpuR, rateR, median(ours, ourCPU)/median(base, baseCPU), median(ours, ourRate)/median(base, baseRate),
			max(maxOf(ours, func(t ThroughputResult) float64 { return t.ForeignUtil }), maxOf(base, func(b BaselineResult) float64 { return b.ForeignUtil })))
		switch alg {
		case jose.ES256:
			line += goal(cpuR <= GoalES256CPURatio, fmt.Sprintf("cpu_per_set<=%.2fx", GoalES256CPURatio), &failed)
		case jose.RS256:
			line += goal(rateR >= GoalRS256Rate, fmt.Sprintf("sets_per_s>=%.2fx", GoalRS256Rate), &failed)
		}
		summary = append(summary, line)
	}

	if o.LatencyRate > 0 {
		d := o.LatencyDuration
		if d <= 0 {
			d = 10 * time.Second
		}
		popts := PipelineOptions{Alg: jose.ES256, Workers: o.Workers, Verify: o.Verify, LogOutput: o.LogOutput}
		var ours []LatencyResult
		var base []BaselineResult
		for r := 0; r < o.Repeat; r++ {
			if bin != "" {
				b, err := RunBaselineLatency(ctx, bin, string(jose.ES256), o.Workers, o.LatencyRate, d)
				if err != nil {
					return err
				}
				fmt.Fprintln(out, b.Line)
				base = append(base, b)
			}
			prof := ""
			if r == 0 {
				prof = latencyProfile(o.CPUProfile)
			}
			dump := ""
			if r == 0 {
				dump = o.LatencyDump
			}
			l, err := Latency(ctx, popts, o.LatencyRate, d, prof, dump)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, l)
			ours = append(ours, l)
		}
		p99 := time.Duration(median(ours, func(l LatencyResult) float64 { return float64(l.P99) }))
		mx := time.Duration(median(ours, func(l LatencyResult) float64 { return float64(l.Max) }))
		line := fmt.Sprintf("COMPARE latency rate=%d p99_ms=%.2f max_ms=%.2f", o.LatencyRate, ms(p99), ms(mx))
		if len(base) == 0 {
			line += goal(p99 <= GoalP99, fmt.Sprintf("p99<=%s", GoalP99), &failed)
		} else {
			bp99 := time.Duration(median(base, func(b BaselineResult) float64 { return float64(b.P99) }))
			bmax := time.Duration(median(base, func(b BaselineResult) float64 { return float64(b.Max) }))
			cpuR := pairedMedian(ours, base, func(l LatencyResult) float64 { return l.CPUPerSetUS }, func(b BaselineResult) float64 { return b.CPUPerSetUS })
			line += fmt.Sprintf(" baseline_p99_ms=%.2f baseline_max_ms=%.2f ratio_max(setrelay/baseline)=%.2f ratio_cpu_per_set(setrelay/baseline)=%.2f foreign_cpu_util_max=%.2f",
				ms(bp99), ms(bmax), float64(mx)/float64(bmax), cpuR,
				max(maxOf(ours, func(l LatencyResult) float64 { return l.ForeignUtil }), maxOf(base, func(b BaselineResult) float64 { return b.ForeignUtil })))
			line += goal(p99 <= bp99 && p99 <= GoalP99, fmt.Sprintf("p99<=baseline_and_%s", GoalP99), &failed)
			line += goal(float64(mx) <= GoalMaxRatio*float64(bmax), fmt.Sprintf("max<=%.0fx", GoalMaxRatio), &failed)
			line += goal(cpuR <= GoalLatencyCPURatio, fmt.Sprintf("latency_cpu_per_set<=%.1fx", GoalLatencyCPURatio), &failed)
		}
		summary = append(summary, line)
	}

	if len(o.Scale.Processes) > 0 {
		rs, err := Scale(ctx, o.Scale, out)
		if err != nil {
			return err
		}
		for _, r := range rs {
			fmt.Fprintln(out, r)
			summary = append(summary, fmt.Sprintf("COMPARE scale processes=%d msgs_per_s=%.0f expected=%.0f ratio=%.3f machine_cpu_util=%.2f", r.Processes, r.SetsPerSec, r.Expected, r.Ratio, r.MachineUtil)+
				goal(r.Ratio >= GoalScaleRatio, fmt.Sprintf("scale_%d>=%.2f", r.Processes, GoalScaleRatio), &failed))
		}
	}

	if o.BacklogExternal > 0 {
		b, err := ExternalBacklog(ctx, o.BacklogExternal, o.Workers, o.Scale.Exe, out)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, b)
		summary = append(summary, fmt.Sprintf("COMPARE backlog_external rss_max_kb=%d rss_growth=%.2f", b.RSSMaxKB, b.Growth)+
			goal(b.RSSMaxKB <= GoalBacklogRSSKB, fmt.Sprintf("rss<=%dMiB", GoalBacklogRSSKB/1024), &failed)+
			goal(b.Growth <= 1.25, "rss_growth<=1.25", &failed))
	}

	if o.Backlog > 0 {
		b, err := Backlog(ctx, PipelineOptions{Alg: jose.ES256, Workers: o.Workers, LogOutput: o.LogOutput}, o.Backlog, out, o.MemProfile)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, b)
		// Flat: the drain adds less than a quarter to what the process
		// held once the backlog was stored.
		summary = append(summary, fmt.Sprintf("COMPARE backlog rss_growth=%.2f", b.GrowthWhileDrained)+goal(b.GrowthWhileDrained <= 1.25, "rss_growth<=1.25", &failed))
	}

	fmt.Fprintf(out, "RESULT process peak_rss_kb=%d\n", procStatusKB("VmHWM"))
	for _, s := range summary {
		fmt.Fprintln(out, s)
	}
	if len(failed) > 0 {
		fmt.Fprintf(out, "goals missed: %s (on a busy machine, check foreign_cpu_util first)\n", strings.Join(failed, ", "))
	}
	return nil
}

func goal(ok bool, name string, failed *[]string) string {
	if ok {
		return " goal " + name + " met"
	}
	*failed = append(*failed, name)
	return " goal " + name + " MISSED"
}

// profileName is path with the algorithm before the extension when
// several algorithms are profiled.
func profileName(path string, alg jose.SignatureAlgorithm, several bool) string {
	if !several {
		return path
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "." + string(alg) + ext
}

func median[T any](xs []T, f func(T) float64) float64 {
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	for i := 1; i < len(v); i++ { // insertion sort: a handful of values
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// pairedMedian is the median of the ratios f(ours[i]) / g(base[i]) of the
// alternating runs taken side by side. The machine's speed drifts by 10-25 %
// over tens of seconds, more than the differences measured: a pair, taken
// seconds apart, shares most of that drift and its ratio cancels it, where
// the ratio of the two sides' medians can pair a slow baseline run with a
// fast setrelay one (2026-11-30: 0.89 of medians, 0.97 of pairs, in one run).
func pairedMedian[A, B any](ours []A, base []B, f func(A) float64, g func(B) float64) float64 {
	n := min(len(ours), len(base))
	ratios := make([]float64, 0, n)
	for i := range n {
		if d := g(base[i]); d > 0 {
			ratios = append(ratios, f(ours[i])/d)
		}
	}
	return median(ratios, func(r float64) float64 { return r })
}

func maxOf[T any](xs []T, f func(T) float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = max(m, f(x))
	}
	return m
}

// latencyProfile is path with ".latency" before the extension, or "".
func latencyProfile(path string) string {
	if path == "" {
		return ""
	}
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + ".latency" + ext
}
