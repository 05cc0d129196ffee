package worker

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
)

// TestDegradedReceiverIsNotPaused: a receiver failing about 14 % of pushes
// at random (10 % 500, 2 % 429, 2 % hanging past the push timeout) under
// concurrency 32 is never paused, and every intent is delivered with no
// dead letter. Runs of five failures in a row do happen at this rate; the
// window's success ratio tells them from an outage (with the ratio check
// removed, this test fails: the runs of failures pause the receiver).
func TestDegradedReceiverIsNotPaused(t *testing.T) {
	e := newEnv(t, 30*time.Second, "flaky")
	rng := rand.New(rand.NewPCG(1, 2))
	var failed atomic.Int64
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		x := randFloat(rng)
		switch {
		case x < 0.10:
			failed.Add(1)
			w.WriteHeader(http.StatusInternalServerError)
		case x < 0.12:
			failed.Add(1)
			w.WriteHeader(http.StatusTooManyRequests)
		case x < 0.14:
			failed.Add(1)
			time.Sleep(600 * time.Millisecond) // past the 200 ms push timeout
			w.WriteHeader(http.StatusAccepted)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
	spec := e.spec(e.js, "flaky", s.endpoint())
	pc, err := push.New(push.Config{Name: "flaky", Endpoint: s.endpoint(), InsecureHTTP: true, Timeout: 200 * time.Millisecond, MaxConns: 32}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	spec.Pusher = pc
	// A threshold of 3 makes runs of failures common at this rate (a few
	// per run), as five in a row are common with 64 pushes in flight on a
	// busy machine; counting runs alone would pause the receiver.
	spec.Pause = PausePolicy{Threshold: 3, Initial: 2 * time.Second, Max: 2 * time.Second, ProbeInterval: time.Second}
	spec.Retry = RetryPolicy{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 32, Receivers: []Receiver{spec}}, e.js, reg)

	const n = 1500
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("flaky", i))
	}
	e.publishMany(ins)
	eventually(t, 60*time.Second, "every intent delivered", func() bool { return e.intentsLeft() == 0 })
	t.Logf("%d failed pushes, %d pushes in all", failed.Load(), s.requests())
	if p := metricValue(t, reg, "setrelay_pauses_total", "flaky"); p != 0 {
		t.Fatalf("paused %v times, want never", p)
	}
	if failed.Load() < n/20 {
		t.Fatalf("only %d failures: the test does not degrade the receiver", failed.Load())
	}
	if got := metricValue(t, reg, "setrelay_deliveries_total", "flaky", "delivered"); got != n {
		t.Fatalf("%v delivered, want %d", got, n)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
	if r := metricValue(t, reg, "setrelay_receiver_success_ratio", "flaky"); r < 0.5 {
		t.Fatalf("success ratio %v, want the window's high ratio", r)
	}
}

// TestDownReceiverIsPausedSoon: a busy receiver failing every push is
// paused within a second or two (the bound is 10 s), for every
// process: the consumer is paused on the server.
func TestDownReceiverIsPausedSoon(t *testing.T) {
	e := newEnv(t, 30*time.Second, "down")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	spec := e.spec(e.js, "down", s.endpoint())
	spec.Pause = PausePolicy{Threshold: 5, Initial: 30 * time.Second, Max: time.Minute}
	reg := prometheus.NewRegistry()
	ins := make([]*intent.Intent, 300)
	for i := range ins {
		ins[i] = sessionRevoked(idN("down", i))
	}
	e.publishMany(ins)
	start := time.Now()
	e.run(Config{Concurrency: 32, Receivers: []Receiver{spec}}, e.js, reg)
	eventually(t, 10*time.Second, "the consumer paused on the server", func() bool { return e.consumerInfo("down").Paused })
	t.Logf("paused %v after start, after %d pushes", time.Since(start).Round(time.Millisecond), s.requests())
	if st, _ := receiverState(t, reg, "down"); st != "paused" {
		t.Fatalf("state %q, want paused", st)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
}

var randMu sync.Mutex

// randFloat draws from a shared generator: the handler runs on many
// goroutines.
func randFloat(r *rand.Rand) float64 {
	randMu.Lock()
	defer randMu.Unlock()
	return r.Float64()
}
