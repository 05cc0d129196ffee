package ssf_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
)

// TestBlockedPushStreamIsPausedForTheReceiver: a push stream whose
// endpoint starts answering 404 is blocked by its worker (nothing
// dead-lettered, the backlog held). The receiver sees that as the
// transmitter pausing the stream: the status endpoint says paused with
// the reason, and, since the broken endpoint cannot take it then, the
// Stream Updated event "paused" arrives with the held events once the
// endpoint works again, followed by "enabled". POSTing status enabled
// after fixing the endpoint probes at once; afterwards the status is
// enabled again. Each Stream Updated event is sent once.
func TestBlockedPushStreamIsPausedForTheReceiver(t *testing.T) {
	var broken atomic.Bool
	var mu sync.Mutex
	var sets []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if broken.Load() {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		mu.Lock()
		sets = append(sets, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	got := func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(sets) }
	rcv := &pushReceiver{srv: srv}
	x := newTX(t, txOptions{RootCAs: rcv.roots(), MinVerify: time.Hour})
	// Probes every 10s by default; short here, so that the intents handed
	// back when the stream blocked come round again quickly.
	d := startDispatcher(t, x, func(d *ssf.Dispatcher) { d.Pause.ProbeInterval = 500 * time.Millisecond })

	var st map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
		"events_requested": []string{caepType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": srv.URL + "/events"},
	}, &st)
	id := st["stream_id"].(string)
	eventually(t, 2*time.Second, "the dispatcher serves the stream", func() bool { return slices.Contains(d.Serving(), id) })

	broken.Store(true)
	x.publish(sessionRevoked("blk-1", "one@example.com"), sessionRevoked("blk-2", "two@example.com"), sessionRevoked("blk-3", "one@example.com"))
	var status map[string]any
	eventually(t, 10*time.Second, "the status endpoint says paused", func() bool {
		x.must(200, "GET", "/ssf/status?stream_id="+id, tokenA, nil, &status)
		return status["status"] == "paused"
	})
	if r, _ := status["reason"].(string); !strings.Contains(r, "404") || !strings.Contains(r, "held") {
		t.Errorf("paused reason %q does not say what is wrong and that events are held", r)
	}
	if n := testenv.StreamMsgs(t, x.js.JS, queue.DLQStream); n != 0 {
		t.Fatalf("%d dead letters for a blocked stream, want 0", n)
	}

	// The receiver fixes its endpoint and enables the stream: a probe
	// goes at once, and everything arrives.
	broken.Store(false)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	enabled := time.Now()
	eventually(t, 15*time.Second, "3 events and 2 Stream Updated events", func() bool { return len(got()) >= 5 })
	t.Logf("delivered %s after enabling", time.Since(enabled))
	eventually(t, 5*time.Second, "the status endpoint says enabled", func() bool {
		x.must(200, "GET", "/ssf/status?stream_id="+id, tokenA, nil, &status)
		return status["status"] == "enabled"
	})
	time.Sleep(300 * time.Millisecond) // room for a duplicate event
	var updates []string
	events := 0
	for _, compact := range got() {
		c := x.verifiedClaims(compact, audA)
		typ, ev := eventOf(c)
		switch typ {
		case caepType:
			events++
		case "https://schemas.openid.net/secevent/ssf/event-type/stream-updated":
			sub, _ := c["sub_id"].(map[string]any)
			if sub["format"] != "opaque" || sub["id"] != id || len(sub) != 2 {
				t.Errorf("stream-updated sub_id %v, want opaque %s", sub, id)
			}
			if r, _ := ev["reason"].(string); r == "" {
				t.Errorf("stream-updated %v has no reason", ev)
			}
			updates = append(updates, ev["status"].(string))
		default:
			t.Errorf("unexpected event %s", typ)
		}
	}
	if events != 3 || !slices.Equal(updates, []string{"paused", "enabled"}) {
		t.Fatalf("got %d events and Stream Updated %v, want 3 and [paused enabled]", events, updates)
	}
}
