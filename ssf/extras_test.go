package ssf_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// withExtras is a session-revoked intent (the type the streams below ask
// for) that also carries a RISC event they did not ask for, a forged SSF
// Stream Updated event, and GOV.UK's eventMetadata companion. Its subject
// is opaque: the intent package refuses a stream event, extra or not, about
// any other kind of subject (TestForgedStreamEventNeedsAnOpaqueSubject), so
// only an opaque one reaches the worker's own filter, which this exercises.
func withExtras(id string) *intent.Intent {
	in := sessionRevoked(id, "x@example.com")
	in.Subject = map[string]any{"format": "opaque", "id": "not-a-stream-of-this-transmitter"}
	in.ExtraEvents = map[string]map[string]any{
		riscType:                             {},
		intent.SSFPrefix + "stream-updated":  {"status": "disabled", "reason": "not from the transmitter"},
		intent.GOVUKPrefix + "eventMetadata": {"note": "companion"},
	}
	return in
}

// eventTypes are the keys of a SET's events claim, read without checking
// the signature (callers check it with verifiedClaims first where they can).
func eventTypes(t *testing.T, compact string) []string {
	t.Helper()
	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Events map[string]any `json:"events"`
	}
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(claims.Events))
}

// SSF 1.0 §8.1.1: events_delivered are the types "the Transmitter MUST
// include in the stream", and a receiver relies on them. An intent's extra
// events ride in the same SET as its main event, so they pass the stream's
// type filter too: a type the stream did not request, or an SSF stream
// event (whose sub_id must be the stream itself, §8.1.4.1 and §8.1.5, and
// which only the transmitter sends), is left out; the companion stays. The
// main event is still delivered, on both delivery methods.
func TestExtraEventsFollowEventsDelivered(t *testing.T) {
	want := []string{caepType, intent.GOVUKPrefix + "eventMetadata"}
	slices.Sort(want)

	t.Run("poll", func(t *testing.T) {
		x := newTX(t, txOptions{})
		id := x.createPoll(tokenA, caepType)["stream_id"].(string)
		x.publish(withExtras("extras-poll"))
		got := x.poll(tokenA, id, map[string]any{}) // a long poll: returns with the first SET
		if len(got.Sets) != 1 {
			t.Fatalf("%d SETs, want the one main event", len(got.Sets))
		}
		for _, compact := range got.Sets {
			if types := eventTypes(t, compact); !slices.Equal(types, want) {
				t.Fatalf("events %v, want %v", types, want)
			}
		}
	})

	t.Run("push", func(t *testing.T) {
		rcv := newPushReceiver(t)
		x := newTX(t, txOptions{RootCAs: rcv.roots()})
		d := startDispatcher(t, x)
		var st map[string]any
		x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
			"events_requested": []string{caepType},
			"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events"},
		}, &st)
		id := st["stream_id"].(string)
		eventually(t, 5*time.Second, "the dispatcher serves the new stream", func() bool { return slices.Contains(d.Serving(), id) })
		x.publish(withExtras("extras-push"))
		eventually(t, 10*time.Second, "the SET pushed", func() bool { return rcv.count() >= 1 })
		sets, _ := rcv.got()
		if types := eventTypes(t, sets[0]); !slices.Equal(types, want) {
			t.Fatalf("events %v, want %v", types, want)
		}
	})
}

// A forged Stream Updated event riding on an intent about a user is refused
// before it is stored: the extra event's subject rule (SSF 1.0 §8.1.5, an
// opaque subject naming the stream) applies to the SET's subject.
func TestForgedStreamEventNeedsAnOpaqueSubject(t *testing.T) {
	in := sessionRevoked("forged", "x@example.com")
	in.ExtraEvents = map[string]map[string]any{intent.SSFPrefix + "stream-updated": {"status": "disabled"}}
	err := in.Validate(intent.Options{})
	if err == nil || !strings.Contains(err.Error(), "ssf.stream-updated needs a subject of format opaque") {
		t.Fatalf("Validate = %v, want the opaque-subject rule for ssf.stream-updated", err)
	}
}
