package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// TestRestartDuringPauseRecovers: a relay pauses a receiver that is down,
// then stops (a rolling restart during the outage). The receiver comes
// back; a new process starts while the recorded pause still runs, adopts
// it, and delivers once it ends. That process must then leave the outage
// behind as the one that paused would: consumer_paused back to 0 (not
// probing one message at a time for ever) and the shared state ok, or
// 'setrelay status' says "failing" for as long as nothing fails again.
func TestRestartDuringPauseRecovers(t *testing.T) {
	e := newEnv(t, 30*time.Second, "gov")
	rcv := e.devReceiver("gov")
	rcv.SetDown(true)
	spec := func() Receiver {
		s := e.spec(e.js, "gov", rcv.endpoint())
		s.Pause = PausePolicy{Threshold: 3, Initial: 3 * time.Second, Max: 3 * time.Second, ProbeInterval: time.Minute}
		s.Retry = RetryPolicy{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, MaxAttempts: 50}
		return s
	}
	stop := e.run(Config{Concurrency: 4, Receivers: []Receiver{spec()}}, e.js, prometheus.NewRegistry())
	const n = 20
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("restart-pause", i))
	}
	e.publishMany(ins)
	eventually(t, 10*time.Second, "the down receiver paused", func() bool { return e.consumerInfo("gov").Paused })
	stop()
	rcv.SetDown(false)

	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 4, Receivers: []Receiver{spec()}}, e.js, reg)
	eventually(t, 20*time.Second, "every intent delivered after the pause", func() bool {
		return rcv.Stats().Accepted >= n && e.intentsLeft() == 0
	})
	eventually(t, 5*time.Second, "the new process no longer counts the receiver paused", func() bool {
		return metricValue(t, reg, "setrelay_consumer_paused", "gov") == 0
	})
	eventually(t, 5*time.Second, "the shared state back to ok", func() bool {
		st, err := SharedState(context.Background(), e.js, "gov")
		return err == nil && st.State == StateOK.String()
	})
	if st, _ := receiverState(t, reg, "gov"); st != "ok" {
		t.Errorf("receiver_state %q, want ok", st)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0", len(dls))
	}
}

// TestStartAfterExpiredPauseRecordsOK: the state bucket still says paused,
// but the pause ran out while no relay was running (all of them restarted
// after the outage). The next process to deliver must record the receiver
// ok, or 'setrelay status' reports it failing indefinitely.
func TestStartAfterExpiredPauseRecordsOK(t *testing.T) {
	e := newEnv(t, 30*time.Second, "gov")
	rcv := e.devReceiver("gov")
	// A first process creates the bucket; then the record an earlier
	// outage left behind.
	first := e.run(Config{Concurrency: 2, Receivers: []Receiver{e.spec(e.js, "gov", rcv.endpoint())}}, e.js, prometheus.NewRegistry())
	eventually(t, 10*time.Second, "the state bucket created", func() bool {
		_, err := e.js.KeyValue(context.Background(), StateBucket)
		return err == nil
	})
	first()
	kv, err := e.js.KeyValue(context.Background(), StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(stateRecord{State: StatePaused.String(), Reason: "timeout", Since: time.Now().Add(-time.Hour), Until: time.Now().Add(-50 * time.Minute)})
	if _, err := kv.Put(context.Background(), queue.Token("gov")+".state", rec); err != nil {
		t.Fatal(err)
	}
	if st, _ := SharedState(context.Background(), e.js, "gov"); st.State != StateFailing.String() {
		t.Fatalf("an expired pause reads as %q, want failing", st.State)
	}

	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "gov", rcv.endpoint())}}, e.js, reg)
	const n = 10
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("expired-pause", i))
	}
	e.publishMany(ins)
	eventually(t, 10*time.Second, "every intent delivered", func() bool { return rcv.Stats().Accepted >= n && e.intentsLeft() == 0 })
	eventually(t, 5*time.Second, "the shared state back to ok", func() bool {
		st, err := SharedState(context.Background(), e.js, "gov")
		return err == nil && st.State == StateOK.String()
	})
	if st, _ := receiverState(t, reg, "gov"); st != "ok" {
		t.Errorf("receiver_state %q, want ok", st)
	}
}
