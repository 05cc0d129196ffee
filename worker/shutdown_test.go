package worker

import (
	"context"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
)

// TestHardKillLosesNothing: a worker whose pushes hang is killed without
// acking anything (its connection closed, then cancelled with no grace);
// a new worker delivers every intent.
func TestHardKillLosesNothing(t *testing.T) {
	e := newEnv(t, 2*time.Second, "rp")
	d := e.devReceiver("rp")
	var hang atomic.Bool
	hang.Store(true)
	var hung atomic.Int64
	s := newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if hang.Load() {
			hung.Add(1)
			<-r.Context().Done() // hold the push until the client gives up
			return
		}
		d.srv.Config.Handler.ServeHTTP(w, r)
	})
	_ = s

	const n = 40
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("kill", i))
	}
	e.publishMany(ins)
	nc1 := e.connect()
	js1, err := jetstream.New(nc1)
	if err != nil {
		t.Fatal(err)
	}
	stop1 := e.run(Config{Concurrency: 8, GracePeriod: -1, Receivers: []Receiver{e.spec(js1, "rp", s.endpoint())}}, js1, nil)
	eventually(t, 5*time.Second, "pushes in flight", func() bool { return hung.Load() >= 8 })
	nc1.Close() // the process dies: no ack, nak or term can reach the server
	stop1()
	if got := d.Stats().Accepted; got != 0 {
		t.Fatalf("%d accepted before the kill, want 0", got)
	}

	hang.Store(false)
	nc2 := e.connect()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	e.run(Config{Concurrency: 8, Receivers: []Receiver{e.spec(js2, "rp", s.endpoint())}}, js2, nil)
	eventually(t, 20*time.Second, "every intent delivered by the new worker", func() bool {
		return d.Stats().Accepted == n && e.intentsLeft() == 0
	})
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0", len(dls))
	}
}

// TestGracefulShutdownUnderLoad: a pool stopped mid-load finishes what it
// holds within the grace period and hands back the rest; a second pool
// delivers everything without waiting for AckWait (30 s here), with no
// dead letters.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	slow := newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		d.srv.Config.Handler.ServeHTTP(w, r)
	})
	const n = 600
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("grace", i))
	}
	e.publishMany(ins)
	reg := prometheus.NewRegistry()
	stop := e.run(Config{Concurrency: 16, GracePeriod: 5 * time.Second, Receivers: []Receiver{e.spec(e.js, "rp", slow.endpoint())}}, e.js, reg)
	eventually(t, 10*time.Second, "some deliveries", func() bool { return d.Stats().Accepted >= 100 })
	stopped := time.Now()
	stop()
	t.Logf("first pool stopped in %v with %d delivered", time.Since(stopped), d.Stats().Accepted)
	// Every goroutine the pool started has exited when Run returns.
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "worker.(*Pool)") || strings.Contains(stacks, "worker.(*beat)") {
		t.Errorf("pool goroutines still running after Run returned:\n%s", stacks)
	}
	if got := metricValue(t, reg, "setrelay_inflight_pushes"); got != 0 {
		t.Errorf("in-flight gauge %v after Run returned, want 0", got)
	}
	delivered := d.Stats().Accepted
	if delivered >= n {
		t.Fatalf("all %d delivered before the stop; the test needs more load", n)
	}
	// Nothing the first pool pulled may be left waiting for AckWait: every
	// message is acked or handed back.
	info := e.consumerInfo("rp")
	if info.NumAckPending != 0 {
		t.Errorf("%d messages still pending ack after a graceful stop", info.NumAckPending)
	}

	e.run(Config{Concurrency: 16, Receivers: []Receiver{e.spec(e.js, "rp", slow.endpoint())}}, e.js, nil)
	eventually(t, 15*time.Second, "every intent delivered", func() bool { return d.Stats().Accepted == n && e.intentsLeft() == 0 })
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0", len(dls))
	}
	if dup := d.Stats().Duplicates; dup != 0 {
		t.Logf("%d duplicate deliveries (allowed: at least once)", dup)
	}
}

// TestOutagePausesConsumer: one receiver goes down. Its consumer is paused
// (as consumer info shows), the other receiver's deliveries carry on, and
// after recovery everything drains with no dead letters.
func TestOutagePausesConsumer(t *testing.T) {
	e := newEnv(t, 30*time.Second, "down", "up")
	down, up := e.devReceiver("down"), e.devReceiver("up")
	down.SetDown(true)
	reg := prometheus.NewRegistry()
	sDown := e.spec(e.js, "down", down.endpoint())
	sDown.Pause = PausePolicy{Threshold: 5, Initial: 500 * time.Millisecond, Max: time.Second}
	sDown.Retry = RetryPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, MaxAttempts: 8}
	e.run(Config{Concurrency: 16, Receivers: []Receiver{sDown, e.spec(e.js, "up", up.endpoint())}}, e.js, reg)

	const n = 300
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("outage", i))
	}
	e.publishMany(ins)
	eventually(t, 10*time.Second, "the failing receiver's consumer paused", func() bool { return e.consumerInfo("down").Paused })
	eventually(t, 15*time.Second, "the healthy receiver served while the other is down", func() bool { return up.Stats().Accepted == n })
	if got := down.Stats().Accepted; got != 0 {
		t.Fatalf("down receiver accepted %d", got)
	}
	// Stay down across several pauses: far more than MaxAttempts cycles'
	// worth of time for the messages retried before the first pause.
	time.Sleep(3 * time.Second)
	pauses := metricValue(t, reg, "setrelay_pauses_total", "down")
	if pauses < 2 {
		t.Errorf("%v pauses, want the pause renewed while the receiver stays down", pauses)
	}
	requests := down.Stats().Requests
	t.Logf("while down: %d requests to the down receiver, %v pauses", requests, pauses)

	down.SetDown(false)
	eventually(t, 20*time.Second, "everything drained after recovery", func() bool {
		return down.Stats().Accepted == n && e.intentsLeft() == 0
	})
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0; first %+v", len(dls), dls[0].DeadLetter)
	}
	if got := metricValue(t, reg, "setrelay_deliveries_total", "down", "delivered"); got != n {
		t.Errorf("delivered counter %v, want %d", got, n)
	}
}

// TestTwoProcessesShareConsumers: two pools on separate connections (as two
// processes would be) serve the same durable consumers; both do work, and
// every intent is delivered to both receivers.
func TestTwoProcessesShareConsumers(t *testing.T) {
	e := newEnv(t, 30*time.Second, "a", "b")
	da, db := e.devReceiver("a"), e.devReceiver("b")
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for _, reg := range regs {
		js, err := jetstream.New(e.connect())
		if err != nil {
			t.Fatal(err)
		}
		e.run(Config{Concurrency: 8, Receivers: []Receiver{e.spec(js, "a", da.endpoint()), e.spec(js, "b", db.endpoint())}}, js, reg)
	}
	const n = 400
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("two", i))
	}
	e.publishMany(ins)
	eventually(t, 30*time.Second, "all delivered to both", func() bool {
		return da.Stats().Accepted == n && db.Stats().Accepted == n && e.intentsLeft() == 0
	})
	for i, reg := range regs {
		if got := metricValue(t, reg, "setrelay_deliveries_total", "a", "delivered") + metricValue(t, reg, "setrelay_deliveries_total", "b", "delivered"); got == 0 {
			t.Errorf("process %d delivered nothing", i)
		}
	}
}

// TestIdleShutdownIsPrompt: an idle pool with the default FetchWait stops
// within about a second of being cancelled (it waits out its long polls
// rather than abandon them), and the long polls swallow nothing: a message
// published the moment Run returned reaches the next pool at once, not
// after AckWait (30s here).
func TestIdleShutdownIsPrompt(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp", "other")
	d := e.devReceiver("rp")
	o := e.devReceiver("other")
	nc := e.connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	specs := func() []Receiver {
		return []Receiver{e.spec(js, "rp", d.endpoint()), e.spec(js, "other", o.endpoint())}
	}
	p, err := New(Config{Concurrency: 4, Receivers: specs()}, Deps{JS: js, Log: e.log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	// Deliver one, so both loops have gone idle into their long polls.
	e.publish(sessionRevoked("before"))
	eventually(t, 5*time.Second, "first intent delivered", func() bool {
		return d.Stats().Accepted == 1 && o.Stats().Accepted == 1
	})
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return")
	}
	// About DefaultFetchWait plus scheduling slack on a loaded machine;
	// the old 5s default fails this.
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("idle shutdown took %s with the default FetchWait (%s)", took, DefaultFetchWait)
	}

	e.publish(sessionRevoked("after"))
	e.run(Config{Concurrency: 4, Receivers: specs()}, js, nil)
	eventually(t, 10*time.Second, "intent published after shutdown delivered", func() bool {
		return d.Stats().Accepted == 2 && o.Stats().Accepted == 2
	})
}
