package chaos

import (
	"context"
	"flag"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

var flagDegraded = flag.Bool("degraded", false, "chaos: run TestDegradedReceiverNotPaused (3 workers at concurrency 64 against a receiver failing 14 % at random, with a core taken; about -duration plus a minute)")

// TestDegradedReceiverNotPaused is issue 10's degraded-receiver proof: three
// `setrelay run` processes at concurrency 64 against a receiver failing
// 14 % at random (10 % 500, 2 % 429, 2 % hangs past the push timeout), with
// another goroutine spinning on a core, spend at most 5 % of the run paused,
// and every intent is delivered. Behind -degraded: it takes a few minutes.
//
//	go test ./test/chaos -run TestDegradedReceiverNotPaused -degraded -duration 60s -intents 6000 -v
func TestDegradedReceiverNotPaused(t *testing.T) {
	if !*flagDegraded {
		t.Skip("degraded-receiver run (~2 min); enable with -degraded")
	}
	bin := *flagBin
	if bin == "" {
		bin = setrelayBinary(t)
	}
	r := newRun(t, bin)
	r.degraded = true
	r.setUp()

	// Another process's worth of CPU: a goroutine spinning on a core.
	var stop atomic.Bool
	defer stop.Store(true)
	go func() {
		runtime.LockOSThread()
		for !stop.Load() {
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cons, err := r.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(chaosReceiver))
	if err != nil {
		t.Fatal(err)
	}
	r.started = time.Now()
	pubDone := make(chan error, 1)
	go func() { pubDone <- r.publish(ctx, queue.NewPublisher(r.js, intent.Options{})) }()

	// Sample the consumer's pause every 100 ms until the queue is drained.
	var samples, paused int
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	published := false
	for !published || !r.drainedNow(ctx) {
		select {
		case err := <-pubDone:
			if err != nil {
				t.Fatalf("publishing: %v", err)
			}
			published = true
		case <-tick.C:
		}
		ictx, icancel := context.WithTimeout(ctx, time.Second)
		if info, err := cons.Info(ictx); err == nil {
			samples++
			if info.Paused {
				paused++
			}
		}
		icancel()
		if time.Since(r.started) > r.duration+5*time.Minute {
			t.Fatalf("not drained %v after the run started", time.Since(r.started))
		}
	}
	stop.Store(true)
	share := float64(paused) / float64(max(samples, 1))
	t.Logf("degraded: %d intents over %v, paused in %d of %d samples (%.1f %%)", r.intents, time.Since(r.started).Round(time.Second), paused, samples, 100*share)
	r.stopWorkers()

	stats, err := r.receiverStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Accepted != int64(len(r.goodIDs)) {
		t.Errorf("receiver accepted %d unique jtis, want %d (every good intent once)", stats.Accepted, len(r.goodIDs))
	}
	dls, err := queue.NewDLQ(r.js).List(ctx, queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		if dl.Reason != "invalid_request" || !strings.HasPrefix(dl.IntentID, "chaos-") {
			t.Errorf("unexpected dead letter %s for %s (%s)", dl.Reason, dl.IntentID, dl.LastReason)
		}
	}
	if len(dls) != len(r.rejectIDs) {
		t.Errorf("%d dead letters, want the %d designed rejections", len(dls), len(r.rejectIDs))
	}
	if share > 0.05 {
		t.Errorf("paused %.1f %% of the run, want at most 5 %%: a degraded receiver is not down", 100*share)
	}
}

// drainedNow reports whether the receiver's consumer has nothing pending
// or in flight.
func (r *run) drainedNow(ctx context.Context) bool {
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cons, err := r.js.Consumer(ictx, queue.IntentStream, queue.ConsumerName(chaosReceiver))
	if err != nil {
		return false
	}
	info, err := cons.Info(ictx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}
