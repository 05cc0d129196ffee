package ssf_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// An operator's status change is the transmitter's own: the receiver gets
// a Stream Updated event (§8.1.5) with the status and reason, before a
// pause takes effect and after an enable.
func TestOperatorStatusChangeSendsStreamUpdated(t *testing.T) {
	x := newTX(t, txOptions{PollAckWait: 5 * time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := ssf.NewAdmin(ctx, ssf.Config{Issuer: issuer}, x.js.JS, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		st  *ssf.Stream
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := admin.SetStatus(ctx, id, ssf.StatusPaused, "maintenance window", 20*time.Second)
		done <- result{st, err}
	}()
	// The pause waits for the receiver to take the event.
	var got []map[string]any
	eventually(t, 10*time.Second, "the Stream Updated event is offered", func() bool {
		got = append(got, x.drain(tokenA, id, 1)...)
		return len(got) > 0
	})
	typ, ev := eventOf(got[0])
	if typ != intent.SSFPrefix+"stream-updated" || ev["status"] != "paused" || ev["reason"] != "maintenance window" {
		t.Fatalf("event %s %v", typ, ev)
	}
	if sub := got[0]["sub_id"].(map[string]any); sub["format"] != "opaque" || sub["id"] != id {
		t.Fatalf("sub_id %v", sub)
	}
	r := <-done
	if r.err != nil || r.st.Status != ssf.StatusPaused {
		t.Fatalf("SetStatus: %v %v", r.st, r.err)
	}
	var status map[string]any
	x.must(200, "GET", "/ssf/status?stream_id="+id, tokenA, nil, &status)
	if status["status"] != "paused" || status["reason"] != "maintenance window" {
		t.Fatalf("status %v", status)
	}

	// Enabling: the event follows.
	if _, err := admin.SetStatus(ctx, id, ssf.StatusEnabled, "", time.Second); err != nil {
		t.Fatal(err)
	}
	got = x.drain(tokenA, id, 1)
	if len(got) != 1 {
		t.Fatalf("%d events after enabling", len(got))
	}
	if typ, ev := eventOf(got[0]); typ != intent.SSFPrefix+"stream-updated" || ev["status"] != "enabled" {
		t.Fatalf("event %s %v", typ, ev)
	}

	// A receiver that does not take the event does not block the operator.
	start := time.Now()
	st, err := admin.SetStatus(ctx, id, ssf.StatusDisabled, "gone", 300*time.Millisecond)
	if err != nil || st.Status != ssf.StatusDisabled {
		t.Fatalf("disable: %v %v", st, err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("disable took %s", el)
	}
}
