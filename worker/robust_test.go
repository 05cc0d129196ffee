package worker

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// panicPusher panics on its first push, then delegates: a stand-in for a
// bug somewhere below the worker triggered by one message.
type panicPusher struct {
	next   Pusher
	calls  atomic.Int64
	panics int64
}

func (p *panicPusher) Push(ctx context.Context, jws []byte) push.Result {
	if p.calls.Add(1) <= p.panics {
		panic("boom")
	}
	return p.next.Push(ctx, jws)
}

// TestPanicIsDeadLettered: a panic while handling a message dead-letters
// that message (reason internal_error) and the pool keeps delivering.
func TestPanicIsDeadLettered(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	spec := e.spec(e.js, "rp", d.endpoint())
	spec.Pusher = &panicPusher{next: spec.Pusher, panics: 1}
	e.run(Config{Concurrency: 1, Receivers: []Receiver{spec}}, e.js, nil)
	e.publish(sessionRevoked("panic-1"))
	e.publish(sessionRevoked("panic-2"))
	eventually(t, 10*time.Second, "both settled", func() bool { return e.intentsLeft() == 0 })
	dls := e.deadLetters()
	if len(dls) != 1 || dls[0].Reason != ReasonInternal || dls[0].IntentID != "panic-1" || dls[0].Description != "boom" {
		t.Fatalf("dead letters %+v, want one internal_error for panic-1", dls)
	}
	if got := d.Stats().Accepted; got != 1 {
		t.Errorf("accepted %d, want 1 (the intent after the panic)", got)
	}
}

// TestSlowPushHeartbeats: a push slower than AckWait is kept alive with
// InProgress, so JetStream does not hand the message to a second worker.
func TestSlowPushHeartbeats(t *testing.T) {
	e := newEnv(t, time.Second, "slow")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(2500 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "slow", s.endpoint())}}, e.js, nil)
	e.publish(sessionRevoked("slow-1"))
	eventually(t, 10*time.Second, "delivered", func() bool { return e.intentsLeft() == 0 })
	time.Sleep(300 * time.Millisecond)
	if got := s.requests(); got != 1 {
		t.Fatalf("%d pushes for one intent with a 2.5s push and 1s AckWait, want 1", got)
	}
}

// TestHeartbeatsFollowEachMessage: one worker goroutine keeps one beat for
// all its messages; the second of two slow pushes in a row is kept alive
// as the first was, so neither is handed to a second push.
func TestHeartbeatsFollowEachMessage(t *testing.T) {
	e := newEnv(t, time.Second, "slow")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		time.Sleep(1600 * time.Millisecond)
		w.WriteHeader(http.StatusAccepted)
	})
	e.run(Config{Concurrency: 1, Receivers: []Receiver{e.spec(e.js, "slow", s.endpoint())}}, e.js, nil)
	e.publish(sessionRevoked("slow-1"))
	e.publish(sessionRevoked("slow-2"))
	eventually(t, 15*time.Second, "delivered", func() bool { return e.intentsLeft() == 0 })
	time.Sleep(300 * time.Millisecond)
	if got := s.requests(); got != 2 {
		t.Fatalf("%d pushes for two intents with 1.6s pushes, 1s AckWait and one worker, want 2", got)
	}
}

// TestReplayGetsNewJTI: a dead letter replayed once the receiver is fixed
// is delivered with the replay's own jti, and only to its receiver.
func TestReplayGetsNewJTI(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp", "other")
	var reject atomic.Bool
	reject.Store(true)
	d := e.devReceiver("rp")
	other := e.devReceiver("other")
	s := newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		if reject.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"err":"invalid_key","description":"key not registered"}`))
			return
		}
		d.srv.Config.Handler.ServeHTTP(w, r)
	})
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "rp", s.endpoint()), e.spec(e.js, "other", other.endpoint())}}, e.js, nil)
	e.publish(sessionRevoked("replay-1"))
	var dls []queue.StoredDeadLetter
	eventually(t, 10*time.Second, "dead letter", func() bool { dls = e.deadLetters(); return len(dls) == 1 })
	eventually(t, 10*time.Second, "other receiver served", func() bool { return other.Stats().Accepted == 1 })

	reject.Store(false)
	res, err := queue.NewDLQ(e.js).Replay(context.Background(), dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "replay delivered", func() bool { return d.Stats().Accepted == 1 && e.intentsLeft() == 0 })
	bodies := d.bodies()
	claims := verifiedClaims(t, e.key, bodies[len(bodies)-1])
	want := set.JTI("replay-1", "rp", strconv.FormatUint(res.DLQSeq, 10))
	if claims["jti"] != want || want == set.JTI("replay-1", "rp", "") {
		t.Errorf("replay jti %v, want %s (a new one)", claims["jti"], want)
	}
	time.Sleep(200 * time.Millisecond)
	if got := other.Stats().Requests; got != 1 {
		t.Errorf("other receiver got %d requests, want 1: the replay is not for it", got)
	}
}

// TestRateLimit: a receiver limited to 20 SETs/s gets them no faster, even
// with the pool's slots free.
func TestRateLimit(t *testing.T) {
	e := newEnv(t, 30*time.Second, "limited")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	spec := e.spec(e.js, "limited", s.endpoint())
	spec.Limiter = rate.NewLimiter(20, 1)
	e.run(Config{Concurrency: 16, Receivers: []Receiver{spec}}, e.js, nil)
	const n = 15
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("rate", i))
	}
	e.publishMany(ins)
	eventually(t, 10*time.Second, "all delivered", func() bool { return e.intentsLeft() == 0 })
	s.mu.Lock()
	span := s.times[len(s.times)-1].Sub(s.times[0])
	s.mu.Unlock()
	// 15 pushes at 20/s with a burst of 1: 14 gaps of 50 ms.
	if span < 650*time.Millisecond {
		t.Fatalf("%d pushes within %v, want >= 700ms at 20/s", n, span)
	}
}

// TestLastDeliveryDeadLetters: when the consumer's MaxDeliver safety net is
// reached before the worker's own attempt limit, the message is
// dead-lettered on its last delivery rather than left where JetStream will
// never deliver it again.
func TestLastDeliveryDeadLetters(t *testing.T) {
	e := newEnvQ(t, queue.Config{AckWait: 30 * time.Second, MaxDeliver: 3}, "rp")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) })
	spec := e.spec(e.js, "rp", s.endpoint())
	spec.Retry.MaxAttempts = 10
	e.run(Config{Concurrency: 2, Receivers: []Receiver{spec}}, e.js, nil)
	e.publish(sessionRevoked("md-1"))
	var dls []queue.StoredDeadLetter
	eventually(t, 10*time.Second, "dead letter", func() bool { dls = e.deadLetters(); return len(dls) > 0 })
	if dls[0].Reason != ReasonMaxDeliveries || dls[0].Status != http.StatusBadGateway || dls[0].Attempts != 3 {
		t.Fatalf("dead letter %+v", dls[0].DeadLetter)
	}
	eventually(t, 5*time.Second, "the intent termed", func() bool { return e.intentsLeft() == 0 })
	if got := s.requests(); got != 3 {
		t.Errorf("%d pushes, want 3", got)
	}
}
