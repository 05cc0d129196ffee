package queue_test

import (
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

// The consumer's MaxDeliver is not a dead-letter mechanism: when a message
// reaches it the server stops delivering it, emits a MAX_DELIVERIES
// advisory, and (nats-server 2.15) leaves it in the Interest stream, holding
// space while no pending count shows it. This pins that behaviour, which is
// why DefaultMaxDeliver sits far above the worker's attempt limit and the
// worker must dead-letter at its own limit.
func TestMaxDeliverIsOnlyASafetyNet(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxDeliver = 2
	cfg.AckWait = time.Second
	env := startEnv(t, cfg, "govuk")
	if _, err := queue.NewPublisher(env.js, optsNone).Publish(ctxT(t), newIntent("md-1")); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		msgs := fetchAll(t, env.js, "govuk", 1, 3*time.Second)
		if len(msgs) != 1 {
			t.Fatalf("delivery %d missing", i+1)
		}
		if err := msgs[0].Nak(); err != nil {
			t.Fatal(err)
		}
	}
	if msgs := fetchAll(t, env.js, "govuk", 1, 1500*time.Millisecond); len(msgs) != 0 {
		t.Fatal("delivered beyond MaxDeliver")
	}
	if n := streamMsgs(t, env.js, queue.IntentStream); n != 1 {
		t.Fatalf("intents stream holds %d after MaxDeliver; the documentation says the message stays", n)
	}
	c, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName("govuk"))
	if err != nil {
		t.Fatal(err)
	}
	if info := c.CachedInfo(); info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("pending %d, ack pending %d: the stuck message is expected to be invisible here", info.NumPending, info.NumAckPending)
	}
}
