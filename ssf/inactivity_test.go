package ssf_test

import (
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// A stream whose receiver makes no request for inactivity_timeout is
// paused by the transmitter, with a Stream Updated event; a receiver that
// keeps polling keeps its stream enabled.
func TestInactivityTimeoutPausesWithStreamUpdated(t *testing.T) {
	x := newTX(t, txOptions{Inactivity: time.Second, PollAckWait: 5 * time.Second})
	startDispatcher(t, x)
	var idle map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{"events_requested": []string{caepType}, "inactivity_timeout": 1}, &idle)
	if idle["inactivity_timeout"] != float64(1) {
		t.Fatalf("inactivity_timeout %v", idle["inactivity_timeout"])
	}
	idleID := idle["stream_id"].(string)
	busyID := x.createPoll(tokenB, caepType)["stream_id"].(string)

	// The busy receiver polls every 200ms; the idle one does nothing.
	stop := time.Now().Add(4 * time.Second)
	for time.Now().Before(stop) {
		x.poll(tokenB, busyID, map[string]any{"returnImmediately": true})
		time.Sleep(200 * time.Millisecond)
	}
	var status map[string]any
	x.must(200, "GET", "/ssf/status?stream_id="+busyID, tokenB, nil, &status)
	if status["status"] != "enabled" {
		t.Fatalf("a polling receiver's stream: %v", status)
	}
	x.must(200, "GET", "/ssf/status?stream_id="+idleID, tokenA, nil, &status)
	if status["status"] != "paused" || status["reason"] != ssf.ReasonInactivity {
		t.Fatalf("an idle receiver's stream: %v", status)
	}
	// When the receiver comes back and enables it, the event is there.
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": idleID, "status": "enabled"}, nil)
	got := x.drain(tokenA, idleID, 1)
	if len(got) != 1 {
		t.Fatalf("%d SETs after enabling", len(got))
	}
	if typ, ev := eventOf(got[0]); typ != intent.SSFPrefix+"stream-updated" || ev["status"] != "paused" || ev["reason"] != ssf.ReasonInactivity {
		t.Fatalf("event %s %v", typ, ev)
	}
}
