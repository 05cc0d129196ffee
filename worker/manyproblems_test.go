package worker

import (
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

// TestManyProblemsIntentDoesNotWedge is issue 11's wedge: a 65,534-byte
// intent whose receivers are all numbers has 32,718 validation problems.
// Stored in full (twice) its dead letter was 4.1 MB, over NATS' 1 MiB
// max_payload, so every store failed and, on the consumer's last delivery,
// was retried in place forever, holding the only worker slot. Now the
// problems are capped and the dead letter fitted to the connection's
// max_payload: with max_deliver 2 and one worker, the intent is
// dead-lettered at once and the next valid intent delivered.
func TestManyProblemsIntentDoesNotWedge(t *testing.T) {
	e := newEnvQ(t, queue.Config{AckWait: 30 * time.Second, MaxDeliver: 2}, "rp")
	d := e.devReceiver("rp")
	e.run(Config{Concurrency: 1, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, nil)

	head := `{"id":"x","type":"caep.session-revoked","receivers":[`
	bad := []byte(head + strings.Repeat("0,", (65534-len(head)-2-1)/2) + `0]}`)
	if len(bad) != 65534 {
		t.Fatalf("test intent is %d bytes, want 65534", len(bad))
	}
	published := time.Now()
	e.publishRaw("many-problems", bad)
	eventually(t, 1*time.Second*raceSlowdown, "the intent dead-lettered", func() bool { return len(e.deadLetters()) == 1 })
	badAt := time.Since(published)

	e.publish(sessionRevoked("after-many-problems"))
	validAt := time.Now()
	eventually(t, 2*time.Second*raceSlowdown, "the next valid intent delivered", func() bool { return d.Stats().Accepted == 1 })
	t.Logf("dead-lettered after %v, next intent delivered after %v", badAt, time.Since(validAt))

	sdl := e.deadLetters()[0]
	stored, err := e.js.Stream(t.Context(), queue.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := stored.GetMsg(t.Context(), sdl.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if limit := e.nc.MaxPayload(); int64(len(raw.Data)) >= limit {
		t.Errorf("dead letter is %d bytes, not under the %d-byte max_payload", len(raw.Data), limit)
	}
	dl := sdl.DeadLetter
	if dl.Reason != ReasonInvalidIntent || dl.Attempts != 1 || string(dl.Intent) != string(bad) {
		t.Errorf("dead letter reason %q, attempts %d, %d intent bytes; want invalid_intent, 1, the 65534 published", dl.Reason, dl.Attempts, len(dl.Intent))
	}
	if len(dl.Errors) > 51 || !strings.Contains(dl.Errors[0], "receivers[0]: must be a receiver name string") ||
		!strings.Contains(dl.Errors[len(dl.Errors)-1], "more problems not listed") {
		t.Errorf("errors: %d entries, first %q, last %q", len(dl.Errors), dl.Errors[0], dl.Errors[len(dl.Errors)-1])
	}
	if strings.Contains(dl.Description, "receivers[1]") || !strings.Contains(dl.Description, "more problems") {
		t.Errorf("description %q; want a count, with the list stored once, in errors", dl.Description)
	}
	if n := e.intentsLeft(); n != 0 {
		t.Errorf("%d intents left in the stream", n)
	}
}
