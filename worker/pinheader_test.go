package worker

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

// The pin id an ordered receiver's partition owner goes by is the one the
// server gave the pull, never one a producer put on its intent. The server
// appends its Nats-Pin-Id to the stored headers, so an intent published
// with its own Nats-Pin-Id arrives with two; taking the first let any
// producer steer the owner's bookkeeping: each forged or changing value
// reads as a new pin (forgetting the intents handed back for retry and
// stopping every start until the server is asked again), and a constant
// one can hide a real re-pin.
func TestOrderedPinIDIsTheServers(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := e.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, queue.PartitionConsumerConfig(e.qcfg, "ordered", 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(queue.SlotSubject(0))
	msg.Data = []byte(`{"id":"pin-forger","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`)
	msg.Header.Set(pinIDHeader, "forged-by-the-producer")
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second), jetstream.FetchPriorityGroup(queue.PartitionGroup))
	if err != nil {
		t.Fatal(err)
	}
	var got jetstream.Msg
	for m := range batch.Messages() {
		got = m
	}
	if got == nil {
		t.Fatalf("no delivery: %v", batch.Error())
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var server string
	for _, g := range info.PriorityGroups {
		if g.Group == queue.PartitionGroup {
			server = g.PinnedClientID
		}
	}
	if server == "" {
		t.Fatalf("the server pinned nobody: %+v", info.PriorityGroups)
	}
	if pin := pinOf(got.Headers()); pin != server {
		t.Fatalf("pin id read as %q, the server's is %q (headers %v)", pin, server, got.Headers())
	}
}
