package worker

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/queue"
)

// TestOldestPendingAge checks setrelay_consumer_oldest_pending_age_seconds
// against a real JetStream: while a receiver answers 503 its intent stays
// unsettled and the gauge shows its age, growing between scrapes without a
// poll; once the receiver accepts, the gauge falls to 0. A receiver that
// accepts everything shows 0 throughout.
func TestOldestPendingAge(t *testing.T) {
	e := newEnv(t, 5*time.Second, "down", "up")
	var accept atomic.Bool
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if accept.Load() {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer down.Close()
	up := e.devReceiver("up")

	reg := prometheus.NewRegistry()
	published := time.Now()
	e.publish(sessionRevoked("old-1"))
	// Pretend the clock is at the publish time plus two minutes: the age
	// then must be about two minutes, which no bug of "age since the
	// poll" or "since the process started" produces.
	const ahead = 2 * time.Minute
	failing := e.spec(e.js, "down", down.URL+"/events")
	failing.Retry.MaxAttempts = 1000 // retried, never dead-lettered, while the test runs
	p, err := New(Config{Concurrency: 4, FetchWait: 300 * time.Millisecond, InfoInterval: 100 * time.Millisecond,
		Receivers: []Receiver{failing, e.spec(e.js, "up", up.endpoint())}},
		Deps{JS: e.js, Log: e.log, Registerer: reg, Now: func() time.Time { return time.Now().Add(ahead) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	const name = "setrelay_consumer_oldest_pending_age_seconds"
	var first float64
	eventually(t, 15*time.Second, "the oldest pending age of the failing receiver", func() bool {
		first = metricValue(t, reg, name, "down")
		return first > 0
	})
	upper := (time.Since(published) + ahead + time.Second).Seconds()
	if first < ahead.Seconds() || first > upper {
		t.Fatalf("oldest pending age %.1fs; want between %.0fs (clock ahead by %s) and %.1fs", first, ahead.Seconds(), ahead, upper)
	}
	eventually(t, 15*time.Second, "the accepting receiver delivered", func() bool { return len(up.bodies()) == 1 })
	time.Sleep(300 * time.Millisecond) // a few polls after the ack
	if got := metricValue(t, reg, name, "up"); got != 0 {
		t.Fatalf("receiver up has nothing pending, age %.1fs; want 0", got)
	}
	time.Sleep(50 * time.Millisecond)
	if again := metricValue(t, reg, name, "down"); again <= first {
		t.Fatalf("age went from %.3fs to %.3fs; it must grow while the intent waits", first, again)
	}

	accept.Store(true)
	eventually(t, 15*time.Second, "the age falls to 0 once the receiver accepts", func() bool {
		return metricValue(t, reg, name, "down") == 0 && e.intentsLeft() == 0
	})
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters; the intent must have been delivered, not dead-lettered", len(dls))
	}
}

// An ordered receiver's backlog waits in its partition consumers, not in
// its receiver consumer: the pending and oldest-age gauges count it there.
// The receiver refuses everything, so 100 intents about one subject stay
// unsettled, at most a window of them in flight.
func TestOrderedReceiverBacklogGauges(t *testing.T) {
	e := newOrderedEnv(t, 30*time.Second, func(string, int) bool { return true })
	const n = 100
	for k := range n {
		e.publishTxn("backlog@example.com", k)
	}
	reg := prometheus.NewRegistry()
	stop := e.startWith(reg)
	defer stop()
	eventually(t, 15*time.Second, "the pending gauge counts the partition's backlog", func() bool {
		return metricValue(t, reg, "setrelay_consumer_pending", "r") >= n-queue.PartitionMaxAckPending
	})
	if age := metricValue(t, reg, "setrelay_consumer_oldest_pending_age_seconds", "r"); age <= 0 {
		t.Fatalf("oldest pending age %.3fs with %d intents waiting; want > 0", age, n)
	}
}
