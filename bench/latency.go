package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/set"
)

// LatencyResult is the publish-to-202 latency at a fixed publish rate.
type LatencyResult struct {
	Alg         string
	Rate        int // intents per second asked for
	Sent        int
	Got         int
	AchievedPS  float64 // publish rate reached
	P50, P99    time.Duration
	Max         time.Duration
	CPUPerSetUS float64
	ForeignUtil float64
	// NATSMsgsPerSet is what the relay's connection sent per SET besides
	// the publishes: one ack each, plus pull requests.
	NATSMsgsPerSet float64
}

// String is the RESULT line.
func (r LatencyResult) String() string {
	return fmt.Sprintf("RESULT latency alg=%s rate=%d achieved_rate=%.0f sent=%d delivered=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f total_cpu_us_per_msg=%.1f foreign_cpu_util=%.2f nats_msgs_per_set=%.2f",
		r.Alg, r.Rate, r.AchievedPS, r.Sent, r.Got, ms(r.P50), ms(r.P99), ms(r.Max), r.CPUPerSetUS, r.ForeignUtil, r.NATSMsgsPerSet)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Latency runs the pool idle, then publishes rate intents per second for
// d, each at its scheduled time (profiled into cpuprofile if set), and measures from just before the publish
// to the receiver's 202. Publishing is asynchronous, so a slow JetStream ack
// does not hold the schedule back.
//
// With dump set, it writes one line per SET to that file: the intent's
// number, when it was published (ns since the first publish) and its
// publish-to-202 latency (ns), to see whether the slow ones cluster in time.
func Latency(ctx context.Context, opts PipelineOptions, rate int, d time.Duration, cpuprofile, dump string) (LatencyResult, error) {
	res := LatencyResult{Alg: string(opts.Alg), Rate: rate}
	if rate <= 0 || d <= 0 {
		return res, fmt.Errorf("bench: latency needs a positive rate and duration")
	}
	n := int(float64(rate) * d.Seconds())
	p, err := NewPipeline(ctx, opts)
	if err != nil {
		return res, err
	}
	defer p.Close()
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = set.JTI(IntentID(i), receiverName, "")
	}
	t := newTracker(jtis)
	p.rcv.track.Store(t)
	p.Start()
	// Let the pool settle into its idle long polls before the clock starts.
	time.Sleep(200 * time.Millisecond)
	runtime.GC()

	if cpuprofile != "" {
		stop, err := startProfile(cpuprofile)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	out0, polls0 := p.svc.NATSOutMsgs(), p.polls
	m0 := takeMeter()
	interval := time.Second / time.Duration(rate)
	// Each publish ack is checked as it comes, by acks, so that the run
	// does not keep every future (and with it every message) until the
	// end: 10,000 of them are about 10 MB of live heap, which made each
	// collection's mark phase, and so the latency tail, longer than the
	// relay's own. The baseline, which publishes synchronously, holds none.
	// Room for all n, so that acks lagging never slow the fixed rate.
	futures := make(chan jetstream.PubAckFuture, n)
	acked := make(chan error, 1)
	go func() { acked <- awaitAcks(ctx, futures) }()
	start := time.Now()
	for i := 0; i < n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		t.published[i].Store(time.Now().UnixNano())
		f, err := publishIntent(p.js, i, p.opts.Subjects)
		if err != nil {
			close(futures)
			<-acked
			return res, err
		}
		futures <- f
	}
	res.AchievedPS = float64(n) / time.Since(start).Seconds()
	close(futures)
	if err := <-acked; err != nil {
		return res, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// Wait for the receiver to have every SET before asking the stream
	// whether it is empty, as the baseline does: WaitDrained's stream info
	// requests, every 2 ms, cost the server CPU and slowed the last SETs
	// in flight.
	for t.arrivals() < n && wctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if err := p.WaitDrained(wctx, nil); err != nil {
		return res, err
	}
	dm := takeMeter().since(m0)
	res.NATSMsgsPerSet = float64(p.svc.NATSOutMsgs()-out0-uint64(p.polls-polls0)-uint64(n)) / float64(n)
	res.Sent = n
	if dump != "" {
		if err := t.dump(dump); err != nil {
			return res, err
		}
	}
	lat := t.latencies()
	res.Got = len(lat)
	res.CPUPerSetUS = dm.self.Seconds() * 1e6 / float64(n)
	res.ForeignUtil = dm.foreign().Seconds() / dm.wall.Seconds()
	if len(lat) == 0 {
		return res, fmt.Errorf("bench: no SET arrived")
	}
	slices.Sort(lat)
	res.P50 = percentile(lat, 0.50)
	res.P99 = percentile(lat, 0.99)
	res.Max = lat[len(lat)-1]
	if err := p.Close(); err != nil {
		return res, err
	}
	if res.Got < n {
		return res, fmt.Errorf("bench: %d of %d SETs arrived", res.Got, n)
	}
	return res, nil
}

// awaitAcks waits for each publish ack from futures until it is closed,
// and returns the first failure; after one it only drains futures, so the
// publisher never blocks on it.
func awaitAcks(ctx context.Context, futures <-chan jetstream.PubAckFuture) error {
	var first error
	for f := range futures {
		if first != nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			first = fmt.Errorf("bench: publish: %w", err)
		case <-ctx.Done():
			first = ctx.Err()
		}
	}
	return first
}

// percentile of sorted durations, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
