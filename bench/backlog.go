package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// BacklogResult shows the process's memory while a large backlog drains.
// The pool pulls no more than it has free workers for, so its memory must
// not grow with the backlog: RSS during the drain stays near where it
// started.
type BacklogResult struct {
	Alg                string
	N                  int
	PublishSecs        float64
	DrainSecs          float64
	SetsPerSec         float64
	CPUPerSetUS        float64
	ForeignUtil        float64
	RSSStartKB         int64 // VmRSS when the drain starts (after publishing)
	RSSMaxKB           int64 // highest VmRSS sampled during the drain
	RSSEndKB           int64
	HeapStartKB        int64 // Go heap in use when the drain starts
	HeapMaxKB          int64
	HeapEndKB          int64
	Samples            int
	Delivered          int64
	GrowthWhileDrained float64 // RSSMaxKB / RSSStartKB
}

// String is the RESULT line.
func (r BacklogResult) String() string {
	return fmt.Sprintf("RESULT backlog alg=%s n=%d publish_secs=%.1f drain_secs=%.1f msgs_per_s=%.0f total_cpu_us_per_msg=%.1f foreign_cpu_util=%.2f rss_start_kb=%d rss_max_kb=%d rss_end_kb=%d rss_growth=%.2f heap_start_kb=%d heap_max_kb=%d heap_end_kb=%d samples=%d delivered=%d",
		r.Alg, r.N, r.PublishSecs, r.DrainSecs, r.SetsPerSec, r.CPUPerSetUS, r.ForeignUtil, r.RSSStartKB, r.RSSMaxKB, r.RSSEndKB, r.GrowthWhileDrained,
		r.HeapStartKB, r.HeapMaxKB, r.HeapEndKB, r.Samples, r.Delivered)
}

// Backlog publishes n intents (file storage) before any worker runs, then
// drains them, sampling RSS and heap every 100 ms and printing a progress
// line to progress (if not nil) every tenth of the backlog.
//
// With memprofile set, a heap profile is written when the drain ends, before
// anything is shut down, so 'go tool pprof -sample_index=inuse_space' shows
// what holds the memory: the embedded server's stores and duplicate window,
// or the relay.
func Backlog(ctx context.Context, opts PipelineOptions, n int, progress io.Writer, memprofile string) (BacklogResult, error) {
	res := BacklogResult{Alg: string(opts.Alg), N: n}
	p, err := NewPipeline(ctx, opts)
	if err != nil {
		return res, err
	}
	defer p.Close()
	t0 := time.Now()
	if err := p.Publish(ctx, 0, n); err != nil {
		return res, err
	}
	res.PublishSecs = time.Since(t0).Seconds()
	runtime.GC()
	var ms runtime.MemStats
	heap := func() int64 {
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse / 1024)
	}
	res.RSSStartKB, res.HeapStartKB = procStatusKB("VmRSS"), heap()
	res.RSSMaxKB, res.HeapMaxKB = res.RSSStartKB, res.HeapStartKB
	if progress != nil {
		fmt.Fprintf(progress, "backlog: %d intents stored in %.1fs; draining (rss %d kB, heap %d kB)\n", n, res.PublishSecs, res.RSSStartKB, res.HeapStartKB)
	}
	nextReport := n / 10
	sample := func() {
		res.Samples++
		res.RSSMaxKB = max(res.RSSMaxKB, procStatusKB("VmRSS"))
		res.HeapMaxKB = max(res.HeapMaxKB, heap())
		if d := p.Delivered(); progress != nil && nextReport > 0 && d >= int64(nextReport) {
			fmt.Fprintf(progress, "backlog: %d/%d delivered, rss %d kB, heap %d kB\n", d, n, procStatusKB("VmRSS"), heap())
			nextReport += n / 10
		}
	}
	m0 := takeMeter()
	p.Start()
	if err := p.WaitDrained(ctx, sample); err != nil {
		return res, err
	}
	dm := takeMeter().since(m0)
	res.RSSEndKB, res.HeapEndKB = procStatusKB("VmRSS"), heap()
	if memprofile != "" {
		if err := writeHeapProfile(memprofile); err != nil {
			return res, err
		}
	}
	res.DrainSecs = dm.wall.Seconds()
	res.SetsPerSec = float64(n) / res.DrainSecs
	res.CPUPerSetUS = dm.self.Seconds() * 1e6 / float64(n)
	res.ForeignUtil = dm.foreign().Seconds() / res.DrainSecs
	res.Delivered = p.Delivered()
	if res.RSSStartKB > 0 {
		res.GrowthWhileDrained = float64(res.RSSMaxKB) / float64(res.RSSStartKB)
	}
	if err := p.Close(); err != nil {
		return res, err
	}
	if res.Delivered < int64(n) {
		return res, fmt.Errorf("bench: receiver accepted %d SETs, want %d", res.Delivered, n)
	}
	return res, nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	return nil
}
