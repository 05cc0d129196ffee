package worker

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// TestOnlyRealReplaysAreReplayed: messages on a receiver's replay subject
// that `dlq replay` did not make are dead-lettered as invalid_replay, never
// pushed, whatever their Setrelay-Replay-Of says: so the replay subject no
// longer bypasses the receiver's event filter, and the jti can no longer be
// steered by a header. A replay carrying a valid MAC is delivered, with the
// jti seeded by the dead-letter sequence the MAC covers.
func TestOnlyRealReplaysAreReplayed(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp", "other")
	d := e.devReceiver("rp")
	other := e.devReceiver("other")
	rp := e.spec(e.js, "rp", d.endpoint(), "caep.session-revoked")
	e.run(Config{Concurrency: 2, Receivers: []Receiver{rp, e.spec(e.js, "other", other.endpoint())}}, e.js, nil)

	ctx := context.Background()
	keys := queue.NewReplayKeys(e.js)
	mac := func(receiver string, seq uint64, data []byte) string {
		m, err := keys.Sign(ctx, receiver, seq, data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	encode := func(id, typ string) []byte {
		b, err := json.Marshal(testIntent(id, typ))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	publish := func(data []byte, h nats.Header) {
		t.Helper()
		if _, err := e.js.PublishMsg(ctx, &nats.Msg{Subject: queue.ReplaySubject("rp"), Data: data, Header: h}); err != nil {
			t.Fatal(err)
		}
	}
	hdr := func(kv ...string) nats.Header {
		h := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}

	// rp asked only for session-revoked: a credential-change "replay".
	forged := encode("forged-1", typeCred)
	publish(forged, nil)
	// An arbitrary Replay-Of to mint a fresh jti, without a MAC.
	publish(encode("forged-2", typeRevoked), hdr(queue.HeaderReplayOf, "424242"))
	// A real MAC for other bytes.
	publish(encode("forged-3", typeRevoked), hdr(queue.HeaderReplayOf, "7", queue.HeaderReplayMAC, mac("rp", 7, encode("something-else", typeRevoked))))
	// A real MAC, but Replay-Of changed to steer the jti.
	steer := encode("forged-4", typeRevoked)
	publish(steer, hdr(queue.HeaderReplayOf, "8", queue.HeaderReplayMAC, mac("rp", 7, steer)))
	// A real MAC made for another receiver.
	publish(encode("forged-5", typeRevoked), hdr(queue.HeaderReplayOf, "7", queue.HeaderReplayMAC, mac("other", 7, encode("forged-5", typeRevoked))))
	// Replay-Of not in canonical form.
	zero := encode("forged-6", typeRevoked)
	publish(zero, hdr(queue.HeaderReplayOf, "007", queue.HeaderReplayMAC, mac("rp", 7, zero)))

	eventually(t, 10*time.Second, "six invalid replays dead-lettered", func() bool { return len(e.deadLetters()) == 6 })
	for _, dl := range e.deadLetters() {
		if dl.Receiver != "rp" || dl.Reason != ReasonInvalidReplay || dl.Attempts != 1 || dl.ReplayOf != 0 {
			t.Errorf("dead letter %s: receiver %q reason %q attempts %d replay_of %d; want rp, invalid_replay, 1, 0 (%s)",
				dl.IntentID, dl.Receiver, dl.Reason, dl.Attempts, dl.ReplayOf, dl.Description)
		}
	}

	// A real replay (the MAC `dlq replay` would compute) is delivered, with
	// the jti of its dead-letter sequence.
	genuine := encode("real-1", typeRevoked)
	publish(genuine, hdr(queue.HeaderReplayOf, "7", queue.HeaderReplayMAC, mac("rp", 7, genuine)))
	eventually(t, 10*time.Second, "the real replay delivered", func() bool { return d.Stats().Accepted == 1 })
	bodies := d.bodies()
	if len(bodies) != 1 {
		t.Fatalf("rp was sent %d SETs, want only the real replay", len(bodies))
	}
	claims := verifiedClaims(t, e.key, bodies[0])
	if want := set.JTI("real-1", "rp", strconv.Itoa(7)); claims["jti"] != want {
		t.Errorf("jti %v, want %s", claims["jti"], want)
	}
	if n := other.Stats().Requests; n != 0 {
		t.Errorf("other was sent %d SETs, want none: the replays were for rp", n)
	}
	if n := e.intentsLeft(); n != 0 {
		t.Errorf("%d messages left in the intents stream", n)
	}
}
