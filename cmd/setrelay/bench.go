package main

import (
	"io"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/bench"
)

func newBenchCmd() *cobra.Command {
	var (
		o        bench.Options
		algs     []string
		noBase   bool
		logFile  string
		noLatent bool
		ordering bool
		subjects int
		parts    int
		scale    []int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure end-to-end delivery against the hand-written baseline, in the same run",
		Long: `Measure setrelay end to end, in this process, as 'setrelay run' assembles it
(embedded JetStream on file storage, worker pool with validation, Prometheus
metrics, JSON info logging, OAuth token), pushing to a loopback receiver that
answers 202, and compare it with the plain pipeline in ../shared/bench/baseline,
built and run as a subprocess with the same algorithm, workers and count.

Prints a RESULT line per measurement (SETs/s, CPU time per delivered SET,
foreign_cpu_util: the cores other programs took meanwhile, so a noisy run
shows), publish-to-202 latency p50/p99 at a fixed rate, peak RSS, and with
--backlog the RSS while a large backlog drains; then COMPARE lines with the
ratios and goals. On a shared machine compare CPU per SET, not SETs/s.

With --ordering it measures per-subject ordering instead: alternating drains
of --n intents unordered on the bare setrelay.intent, unordered on the slot
subjects, and ordered (ordering: subject, --partitions), spread over
--subjects subjects; the goal is ordered >= 0.5x unordered SETs/s.

--repeat N runs every comparison N times, alternating baseline and
setrelay (the goals ask for N >= 5). A ratio is the median of the N pairs'
own ratios, which cancels the machine's drift between runs; of_medians_*
gives the ratio of the two sides' medians beside it. For a steadier CPU
ratio still, scripts/bench-concurrent.sh drains both at the same moment.

--scale 1,2,3 measures scale-out: that many 'setrelay run' processes (this
binary) on one 3-node JetStream cluster with R3 streams, against a receiver
that takes --scale-delay per request. Processes that add up without
contending deliver processes x --scale-concurrency / --scale-delay SETs a
second; the ratio to that is reported.

--backlog-external N stores N intents on a nats-server apart from the
worker and reports the RSS of one 'setrelay run' process draining them.`,
		Example: `  setrelay bench
  setrelay bench --alg ES256 --n 50000 --repeat 3 --cpuprofile /tmp/cpu.prof
  setrelay bench --alg ES256 --no-baseline --no-latency --backlog 1000000
  setrelay bench --repeat 5 --baseline-dir ../shared/bench/baseline
  setrelay bench --alg ES256 --no-throughput --no-latency --scale 1,2,3
  setrelay bench --alg ES256 --no-throughput --no-latency --backlog-external 1000000`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, a := range algs {
				switch alg := jose.SignatureAlgorithm(strings.ToUpper(a)); alg {
				case jose.ES256, jose.ES384, jose.RS256, jose.PS256, jose.EdDSA:
					o.Algs = append(o.Algs, alg)
				default:
					return usageErrorf("--alg %q: use ES256, ES384, RS256, PS256 or EdDSA", a)
				}
			}
			if noBase {
				o.BaselineDir = ""
			}
			if noLatent {
				o.LatencyRate = 0
			}
			var w io.Writer = io.Discard
			if logFile != "" {
				f, err := os.Create(logFile)
				if err != nil {
					return usageErrorf("--log-file: %w", err)
				}
				defer f.Close()
				w = f
			}
			o.LogOutput = w
			if ordering {
				return bench.Ordering(cmd.Context(), bench.OrderingOptions{
					Pipeline: bench.PipelineOptions{Alg: o.Algs[0], Workers: o.Workers, LogOutput: w},
					N:        o.N, Subjects: subjects, Partitions: parts, Repeat: o.Repeat,
					CPUProfile: o.CPUProfile,
				}, cmd.OutOrStdout())
			}
			for _, n := range scale {
				if n < 1 {
					return usageErrorf("--scale %d: give process counts of at least 1, e.g. --scale 1,2,3", n)
				}
			}
			o.Scale.Processes = scale
			return bench.Run(cmd.Context(), o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&algs, "alg", []string{"ES256", "RS256"}, "signing algorithms to measure")
	f.IntVar(&o.N, "n", 20000, "intents per throughput run (ES/EdDSA)")
	f.IntVar(&o.RSAN, "rsa-n", 4000, "intents per throughput run for RS256/PS256")
	f.IntVar(&o.Workers, "workers", 64, "worker.concurrency, and the baseline's -workers")
	f.IntVar(&o.Repeat, "repeat", 1, "runs per comparison, alternating baseline and setrelay (the median of the pairs' ratios is compared)")
	f.StringVar(&o.BaselineDir, "baseline-dir", bench.DefaultBaselineDir(), "the baseline module (../shared/bench/baseline of the repository)")
	f.BoolVar(&noBase, "no-baseline", false, "skip the baseline")
	f.IntVar(&o.LatencyRate, "rate", 1000, "intents per second in the latency phase (ES256)")
	f.DurationVar(&o.LatencyDuration, "duration", 10*time.Second, "length of the latency phase")
	f.BoolVar(&noLatent, "no-latency", false, "skip the latency phase")
	f.BoolVar(&ordering, "ordering", false, "measure per-subject ordering (ordered vs unordered SETs/s) instead; uses the first --alg")
	f.IntVar(&subjects, "subjects", 10000, "with --ordering: distinct subjects the intents are about")
	f.IntVar(&parts, "partitions", 256, "with --ordering: the ordered receiver's partitions")
	f.BoolVar(&o.NoThroughput, "no-throughput", false, "skip the throughput comparisons")
	f.BoolVar(&o.DefaultGC, "default-gc", false, "measure with Go's default GC pacing, not the one 'setrelay run' applies")
	f.IntVar(&o.Backlog, "backlog", 0, "also pre-publish this many intents and report RSS while they drain (e.g. 1000000)")
	f.BoolVar(&o.Verify, "verify", false, "push to the conformance receiver (verifies every SET; not comparable with the baseline)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of setrelay's measured phase (one file per algorithm)")
	f.StringVar(&o.LatencyDump, "latency-dump", "", "write the first latency run's per-SET publish time and latency (ns) here, to see when the slow ones happen")
	f.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile at the end of the --backlog drain")
	f.IntSliceVar(&scale, "scale", nil, "scale-out: numbers of 'setrelay run' processes to measure on a 3-node cluster (e.g. 1,2,3)")
	f.IntVar(&o.Scale.Concurrency, "scale-concurrency", 16, "worker.concurrency of each process in the scale-out measurement")
	f.DurationVar(&o.Scale.Delay, "scale-delay", 50*time.Millisecond, "the scale-out receiver's time per request")
	f.DurationVar(&o.Scale.Measure, "scale-measure", 5*time.Second, "the scale-out measurement window")
	f.IntVar(&o.BacklogExternal, "backlog-external", 0, "store this many intents on a separate nats-server and report the RSS of one 'setrelay run' draining them")
	f.StringVar(&logFile, "log-file", "", "write setrelay's JSON logs here instead of discarding them")
	return cmd
}
