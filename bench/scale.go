package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ScaleOptions configure the scale-out measurement.
type ScaleOptions struct {
	// Processes are the numbers of 'setrelay run' processes to measure in
	// turn (default 1, 2, 3).
	Processes []int
	// Concurrency is each process's worker.concurrency (default 16).
	Concurrency int
	// Delay is the receiver's time per request (default 50ms).
	Delay time.Duration
	// Measure is the measured window, after a warm-up second (default 5s).
	Measure time.Duration
	// Exe is the setrelay binary run as 'Exe run' (default os.Executable).
	Exe string
}

// ScaleResult is one scale-out measurement.
type ScaleResult struct {
	Processes, Concurrency int
	Delay                  time.Duration
	// Expected is processes × concurrency / delay: what the processes
	// deliver if they add up without contending.
	Expected   float64
	SetsPerSec float64
	// Ratio is SetsPerSec / Expected.
	Ratio float64
	// RunCPUUtil is the cores the 'setrelay run' processes used together;
	// MachineUtil the whole machine's (the cluster and receiver, in this
	// process, included), to tell a latency-bound run from a CPU-bound one.
	RunCPUUtil, MachineUtil float64
	RSSKB                   []int64
}

// String is the RESULT line.
func (r ScaleResult) String() string {
	return fmt.Sprintf("RESULT scale processes=%d concurrency=%d receiver_delay_ms=%d expected_per_s=%.0f msgs_per_s=%.0f ratio=%.3f run_cpu_util=%.2f machine_cpu_util=%.2f rss_kb=%v",
		r.Processes, r.Concurrency, r.Delay.Milliseconds(), r.Expected, r.SetsPerSec, r.Ratio, r.RunCPUUtil, r.MachineUtil, r.RSSKB)
}

// Scale runs, for each process count, that many 'setrelay run' processes
// against one 3-node JetStream cluster (R3 streams, as in production) and a
// receiver that takes Delay per request, with a backlog deep enough that
// no process ever waits for work. Once every process is ready and a second
// has passed, it counts the SETs the receiver accepted over Measure.
// Workers that scale out add processes × concurrency / Delay SETs a second;
// contention (on the consumer, the pull requests, the acks) shows as a
// ratio below 1.
func Scale(ctx context.Context, o ScaleOptions, progress io.Writer) ([]ScaleResult, error) {
	if len(o.Processes) == 0 {
		o.Processes = []int{1, 2, 3}
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Delay <= 0 {
		o.Delay = 50 * time.Millisecond
	}
	if o.Measure <= 0 {
		o.Measure = 5 * time.Second
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("bench: setrelay binary: %w", err)
		}
		o.Exe = exe
	}
	var out []ScaleResult
	for _, n := range o.Processes {
		r, err := scaleOnce(ctx, o, n, progress)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func scaleOnce(ctx context.Context, o ScaleOptions, n int, progress io.Writer) (ScaleResult, error) {
	res := ScaleResult{Processes: n, Concurrency: o.Concurrency, Delay: o.Delay}
	res.Expected = float64(n*o.Concurrency) / o.Delay.Seconds()
	dir, err := os.MkdirTemp("", "setrelay-bench-scale-")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	cl, err := startCluster(ctx, dir, 3)
	if err != nil {
		return res, err
	}
	defer cl.shutdown()
	rcv, err := startSlowReceiver(o.Delay)
	if err != nil {
		return res, err
	}
	defer rcv.close()
	path, cfg, err := writeRunConfig(dir, cl.urls(), rcv.url(), 3, o.Concurrency)
	if err != nil {
		return res, err
	}
	nc, js, err := cl.connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	if err := provision(ctx, cfg, js); err != nil {
		return res, err
	}
	// Enough for start-up, the warm-up and the window, twice over.
	backlog := int(res.Expected * (o.Measure.Seconds() + 5) * 2)
	if err := publishN(ctx, js, 0, backlog); err != nil {
		return res, err
	}
	if progress != nil {
		fmt.Fprintf(progress, "scale: %d intents stored on a 3-node cluster; starting %d setrelay run process(es), concurrency %d each\n", backlog, n, o.Concurrency)
	}
	started := time.Now()
	rp, err := startRuns(ctx, o.Exe, path, n, dir)
	if err != nil {
		return res, err
	}
	defer rp.stop()
	if progress != nil {
		fmt.Fprintf(progress, "scale: %d process(es) pulling %.1fs after they were started\n", n, time.Since(started).Seconds())
		for _, w := range rp.warnings() {
			fmt.Fprintf(progress, "scale: a setrelay run process warned: %s\n", w)
		}
	}
	time.Sleep(time.Second)
	d0, cpu0, m0 := rcv.accepted.Load(), rp.cpu(), takeMeter()
	time.Sleep(o.Measure)
	d1, cpu1, m1 := rcv.accepted.Load(), rp.cpu(), takeMeter()
	res.RSSKB = rp.rssKB()
	dm := m1.since(m0)
	res.SetsPerSec = float64(d1-d0) / dm.wall.Seconds()
	res.Ratio = res.SetsPerSec / res.Expected
	res.RunCPUUtil = (cpu1 - cpu0).Seconds() / dm.wall.Seconds()
	res.MachineUtil = dm.mach.Seconds() / dm.wall.Seconds()
	if d1 == d0 {
		return res, fmt.Errorf("bench: no SET delivered in %s by %d setrelay run process(es); their logs:\n%s", o.Measure, n, rp.logs())
	}
	if d1 >= int64(backlog) {
		return res, fmt.Errorf("bench: the backlog of %d ran out during the window; the figure would be low", backlog)
	}
	return res, nil
}

// publishN stores intents first..first+n-1 as the bench pipeline does
// (Nats-Msg-Id set), waiting for every acknowledgement.
func publishN(ctx context.Context, js jetstream.JetStream, first, n int) error {
	return publishWindowed(ctx, first, n, func(i int) (jetstream.PubAckFuture, error) {
		return publishIntent(js, i, 0)
	})
}

// ExternalBacklogResult is the memory of one 'setrelay run' process while
// it drains a backlog stored on a separate nats-server.
type ExternalBacklogResult struct {
	N                      int
	PublishSecs, DrainSecs float64
	SetsPerSec             float64
	RSSStartKB, RSSMaxKB   int64
	RSSEndKB               int64
	Samples                int
	Growth                 float64 // RSSMaxKB / RSSStartKB
	RSSAtTenths            []int64 // RSS when each tenth of the backlog was delivered
	CPUPerSetUS            float64
	// AnonMaxKB and FileEndKB split the RSS: anonymous memory (heap,
	// stacks: what the process allocated) at its highest, and pages of
	// the binary and libraries mapped from the page cache at the end. The
	// file part is shared and reclaimable, and varies with the kernel: a
	// freshly written binary may sit in the page cache as large folios
	// that the kernel maps 2 MiB at a time (FilePmdMapped), which adds
	// tens of MiB of RSS the process never asked for.
	AnonMaxKB, FileEndKB, FilePmdEndKB int64
}

// String is the RESULT line.
func (r ExternalBacklogResult) String() string {
	return fmt.Sprintf("RESULT backlog_external n=%d publish_secs=%.1f drain_secs=%.1f msgs_per_s=%.0f run_cpu_us_per_msg=%.1f rss_start_kb=%d rss_max_kb=%d rss_end_kb=%d rss_growth=%.2f rss_by_tenth_kb=%v rss_anon_max_kb=%d rss_file_end_kb=%d file_pmd_mapped_end_kb=%d samples=%d",
		r.N, r.PublishSecs, r.DrainSecs, r.SetsPerSec, r.CPUPerSetUS, r.RSSStartKB, r.RSSMaxKB, r.RSSEndKB, r.Growth, r.RSSAtTenths, r.AnonMaxKB, r.FileEndKB, r.FilePmdEndKB, r.Samples)
}

// ExternalBacklog stores n intents on a nats-server running apart from the
// worker (in this process), then starts one 'setrelay run' process against
// it and a receiver answering 202 at once, and samples that process's RSS
// every 100 ms until the backlog is delivered. The RSS is the worker's
// alone: the stored backlog lives in the server.
func ExternalBacklog(ctx context.Context, n, concurrency int, exe string, progress io.Writer) (ExternalBacklogResult, error) {
	res := ExternalBacklogResult{N: n}
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return res, fmt.Errorf("bench: setrelay binary: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "setrelay-bench-backlog-")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)
	cl, err := startCluster(ctx, dir, 1)
	if err != nil {
		return res, err
	}
	defer cl.shutdown()
	rcv, err := startSlowReceiver(0)
	if err != nil {
		return res, err
	}
	defer rcv.close()
	path, cfg, err := writeRunConfig(dir, cl.urls(), rcv.url(), 1, concurrency)
	if err != nil {
		return res, err
	}
	nc, js, err := cl.connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	if err := provision(ctx, cfg, js); err != nil {
		return res, err
	}
	t0 := time.Now()
	if err := publishN(ctx, js, 0, n); err != nil {
		return res, err
	}
	res.PublishSecs = time.Since(t0).Seconds()
	if progress != nil {
		fmt.Fprintf(progress, "backlog_external: %d intents stored in %.1fs on a separate nats-server; starting setrelay run\n", n, res.PublishSecs)
	}
	rp, err := startRuns(ctx, exe, path, 1, dir)
	if err != nil {
		return res, err
	}
	defer rp.stop()
	pid := fmt.Sprint(rp.cmds[0].Process.Pid)
	res.RSSStartKB = pidStatusKB(pid, "VmRSS")
	res.RSSMaxKB = res.RSSStartKB
	m0, cpu0 := takeMeter(), rp.cpu()
	next := int64(n / 10)
	for rcv.accepted.Load() < int64(n) {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		rss := pidStatusKB(pid, "VmRSS")
		res.AnonMaxKB = max(res.AnonMaxKB, pidStatusKB(pid, "RssAnon"))
		res.Samples++
		res.RSSMaxKB = max(res.RSSMaxKB, rss)
		if d := rcv.accepted.Load(); next > 0 && d >= next {
			res.RSSAtTenths = append(res.RSSAtTenths, rss)
			if progress != nil {
				fmt.Fprintf(progress, "backlog_external: %d/%d delivered, setrelay run rss %d kB\n", d, n, rss)
			}
			next += int64(n / 10)
		}
	}
	dm := takeMeter().since(m0)
	res.RSSEndKB = pidStatusKB(pid, "VmRSS")
	res.FileEndKB = pidStatusKB(pid, "RssFile")
	res.FilePmdEndKB = pidSmapsKB(pid, "FilePmdMapped")
	res.DrainSecs = dm.wall.Seconds()
	res.SetsPerSec = float64(n) / res.DrainSecs
	res.CPUPerSetUS = (rp.cpu() - cpu0).Seconds() * 1e6 / float64(n)
	if res.RSSStartKB > 0 {
		res.Growth = float64(res.RSSMaxKB) / float64(res.RSSStartKB)
	}
	return res, nil
}
