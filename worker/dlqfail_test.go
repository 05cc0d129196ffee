package worker

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

// dlqOutage deletes the dead-letter stream, so every PublishDeadLetter
// fails, and returns a function that provisions it again.
func (e *env) dlqOutage(receivers ...string) (restore func()) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, queue.DLQStream); err != nil {
		e.t.Fatal(err)
	}
	return func() {
		e.t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := queue.Provision(ctx, e.js, e.qcfg, receivers); err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestDeadLetterStoreFailureKeepsIntent: while the dead letter cannot be
// stored the intent is not Termed; once the dead-letter stream is back, the
// dead letter is stored and only then is the intent removed.
func TestDeadLetterStoreFailureKeepsIntent(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxDeliver int
	}{
		{"redelivered", 100},
		// With MaxDeliver 1 the first delivery is the last: JetStream
		// will never deliver the message again, so a failed dead letter
		// must be retried in place, not left to a redelivery that never
		// comes.
		{"last delivery", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvQ(t, queue.Config{AckWait: 30 * time.Second, MaxDeliver: tc.maxDeliver}, "rp")
			restore := e.dlqOutage("rp")
			d := e.devReceiver("rp")
			e.run(Config{Concurrency: 2, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, nil)
			bad := []byte(`{"id":"bad-1","type":"no-such-type"}`)
			e.publishRaw("bad-1", bad)
			eventually(t, 10*time.Second, "the intent delivered to the worker", func() bool {
				return e.consumerInfo("rp").NumPending == 0
			})
			// Longer than nats.go's own publish retries on "no responders".
			time.Sleep(2 * time.Second)
			if n := e.intentsLeft(); n != 1 {
				t.Fatalf("%d intents left while the dead-letter stream is down, want 1 (the intent must not be Termed)", n)
			}
			restore()
			eventually(t, 20*time.Second, "the dead letter stored and the intent removed", func() bool {
				return len(e.deadLetters()) == 1 && e.intentsLeft() == 0
			})
			if dl := e.deadLetters()[0]; dl.Reason != ReasonInvalidIntent || !bytes.Equal(dl.Intent, bad) {
				t.Errorf("dead letter %+v", dl.DeadLetter)
			}
		})
	}
}
