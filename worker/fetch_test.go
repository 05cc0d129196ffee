package worker

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTrickleTakesFewPulls: intents arriving one by one, faster than the
// long poll expires, are brought by a few pull requests that each stream
// several of them, not by two requests per intent (an empty no-wait pull,
// then a long poll of one), which is what the fetch loop used to cost.
func TestTrickleTakesFewPulls(t *testing.T) {
	const n = 60
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 8, FetchWait: 2 * time.Second, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, reg)
	// Let the loop go idle into its long poll of one.
	time.Sleep(100 * time.Millisecond)
	for i := 0; i < n; i++ {
		e.publish(sessionRevoked(idN("trickle", i)))
		time.Sleep(10 * time.Millisecond)
	}
	eventually(t, 10*time.Second, "every intent delivered", func() bool { return d.Stats().Accepted == n })
	// Requests double after each full batch up to the 8 slots, so about
	// n/8 plus the ramp; 2 per intent (120) before.
	pulls := metricValue(t, reg, "setrelay_pull_requests_total", "rp")
	t.Logf("%.0f pull requests for %d intents", pulls, n)
	if pulls > n/2 {
		t.Fatalf("%.0f pull requests for %d intents arriving every 10ms, want at most %d", pulls, n, n/2)
	}
}

// TestPullsStayWithinFreeSlots: however intents arrive (a backlog, then a
// trickle slower than the pushes), the server never has more messages out
// to the pool than it has slots, so none waits unstarted in the client
// while its AckWait runs. One over is allowed: the server handles an ack
// and the next pull request on separate queues, so it may count the acked
// message for a moment after the client has freed its slot.
func TestPullsStayWithinFreeSlots(t *testing.T) {
	const (
		concurrency = 3
		backlog     = 9
		trickle     = 9
	)
	e := newEnv(t, 30*time.Second, "slow")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(150 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	for i := 0; i < backlog; i++ {
		e.publish(sessionRevoked(idN("backlog", i)))
	}
	c := e.consumer(e.js, "slow")
	var worst atomic.Int64
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(5 * time.Millisecond):
			}
			info, err := c.Info(context.Background())
			if err != nil {
				continue
			}
			if got := int64(info.NumAckPending); got > worst.Load() {
				worst.Store(got)
			}
		}
	}()
	e.run(Config{Concurrency: concurrency, Receivers: []Receiver{e.spec(e.js, "slow", s.endpoint())}}, e.js, nil)
	for i := 0; i < trickle; i++ {
		time.Sleep(40 * time.Millisecond)
		e.publish(sessionRevoked(idN("trickle", i)))
	}
	eventually(t, 20*time.Second, "every intent delivered", func() bool { return e.intentsLeft() == 0 })
	close(stopWatch)
	<-watched
	if got := s.requests(); got != backlog+trickle {
		t.Fatalf("%d pushes, want %d", got, backlog+trickle)
	}
	w := worst.Load()
	t.Logf("at most %d messages out to %d slots", w, concurrency)
	if w > concurrency+1 {
		t.Fatalf("the server had %d messages out to a pool of %d slots", w, concurrency)
	}
	if w < concurrency {
		t.Fatalf("at most %d messages out to a pool of %d slots with a backlog: the watch saw nothing", w, concurrency)
	}
}

// TestBulkConsumerDrainsBacklog: with a Bulk consumer (the same consumer
// over a second connection), a backlog is pulled through it after the
// first batch, every intent delivered once; once the backlog is gone, the
// pulls go back to Consumer.
func TestBulkConsumerDrainsBacklog(t *testing.T) {
	const n = 120
	e := newEnv(t, 30*time.Second, "bulk")
	for i := range n {
		e.publish(sessionRevoked("bulk-" + strconv.Itoa(i)))
	}
	bnc := e.connect()
	bjs, err := jetstream.New(bnc)
	if err != nil {
		t.Fatal(err)
	}
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	spec := e.spec(e.js, "bulk", s.endpoint())
	spec.Bulk = e.consumer(bjs, "bulk")
	e.run(Config{Concurrency: 4, Receivers: []Receiver{spec}}, e.js, nil)
	eventually(t, 20*time.Second, "backlog delivered", func() bool { return e.intentsLeft() == 0 })
	if got := s.requests(); got != n {
		t.Errorf("%d pushes for %d intents, want one each", got, n)
	}
	viaBulk := bnc.Stats().InMsgs
	if viaBulk < n/2 {
		t.Errorf("%d messages came over the bulk connection, want most of the %d of the backlog", viaBulk, n)
	}

	// No backlog: a single intent is pulled through Consumer.
	e.publish(sessionRevoked("bulk-after"))
	eventually(t, 10*time.Second, "delivered", func() bool { return s.requests() == n+1 })
	if after := bnc.Stats().InMsgs; after != viaBulk {
		t.Errorf("the bulk connection received %d more messages with no backlog, want 0", after-viaBulk)
	}
}
