package status_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/status"
)

// An ordered receiver's backlog waits in its partition consumers, not its
// receiver consumer: the status counts it there, and only there (a
// receiver whose name extends the ordered one's, "ord_b", keeps its own
// partitions).
func TestStatusCountsAnOrderedReceiversPartitions(t *testing.T) {
	env := testenv.StartJetStream(t, queue.Config{Ordered: map[string]int{"ord": 8, "ord_b": 16}}, "ord", "ord_b", "plain")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pub := queue.NewPublisher(env.JS, intent.Options{})
	const n = 12
	for i := range n {
		in := &intent.Intent{ID: fmt.Sprintf("st-%02d", i), Type: "caep.session-revoked",
			Subject: map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", i)},
			Event:   map[string]any{"event_timestamp": float64(1700000000)}}
		if _, err := pub.Publish(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	// A new consumer's pending count catches up with the stream shortly
	// after the publishes (the server counts it asynchronously), so the
	// report is read until it settles.
	var got map[string]status.Receiver
	for deadline := time.Now().Add(10 * time.Second); ; {
		rep, err := status.Collect(ctx, env.JS, status.Options{Receivers: []string{"ord", "ord_b", "plain"}})
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]status.Receiver{}
		for _, r := range rep.Receivers {
			got[r.Name] = r
		}
		if (got["ord"].Pending == n && got["ord_b"].Pending == n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range []string{"ord", "ord_b", "plain"} {
		r := got[name]
		if r.Pending != n || r.InFlight != 0 || r.OldestPending <= 0 {
			t.Errorf("%s: pending %d, in flight %d, oldest %v; want %d pending with an age", name, r.Pending, r.InFlight, r.OldestPending, n)
		}
	}
}
