package queue_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// A microservice publishes an intent. The embedded server only makes the
// example self-contained; a service would Connect to its NATS URL.
func ExamplePublisher_Publish() {
	dir, _ := os.MkdirTemp("", "setrelay-example")
	defer os.RemoveAll(dir)
	cfg := queue.Config{StoreDir: dir, Listen: "127.0.0.1:-1"}
	srv, err := queue.StartEmbedded(cfg, zap.NewNop())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// What a producer does: connect, then publish.
	cfg.URL = srv.ClientURL()
	nc, err := queue.Connect(ctx, cfg, zap.NewNop())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := queue.Provision(ctx, js, cfg, []string{"govuk"}); err != nil { // setrelay does this at start-up
		fmt.Println(err)
		return
	}

	pub := queue.NewPublisher(js, intent.Options{})
	in := &intent.Intent{
		ID:      "acct-42-session-revoked-1",
		Type:    "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice@example.com"},
	}
	ctx = queue.WithTraceparent(ctx, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	ack, err := pub.Publish(ctx, in)
	fmt.Println(ack.Sequence, ack.Duplicate, err)

	// A retry of the same intent is deduplicated by its id.
	ack, err = pub.Publish(ctx, in)
	fmt.Println(ack.Sequence, ack.Duplicate, err)
	// Output:
	// 1 false <nil>
	// 1 true <nil>
}
