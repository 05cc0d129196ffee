package ssf_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// Two setrelay processes (each its own NATS connection and HTTP server)
// serve polls for one stream: 20,000 intents are each acknowledged once,
// a SET whose poll response was lost (its process killed mid-poll) is
// offered again until acknowledged, and nothing is lost.
func TestPollTwoProcessesKillOneMidPoll(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	a := newTX(t, txOptions{PollAckWait: 2 * time.Second, MaxPollWait: time.Second})
	b := newTX(t, txOptions{PollAckWait: 2 * time.Second, js: a.js, key: a.key})
	id := a.createPoll(tokenA, caepType)["stream_id"].(string)

	ins := make([]*intent.Intent, n)
	for i := range n {
		ins[i] = sessionRevoked(idN("mp", i), fmt.Sprintf("u%d@example.com", i%100))
	}
	a.publish(ins...)

	// Process b is killed after handing out one batch that the receiver
	// never gets to acknowledge.
	lost := b.poll(tokenA, id, map[string]any{"maxEvents": 100, "returnImmediately": true})
	if len(lost.Sets) != 100 {
		t.Fatalf("first batch: %d SETs", len(lost.Sets))
	}
	b.https.CloseClientConnections()
	b.https.Close()
	b.nc.Close()

	// Two receiver workers poll process a (the survivor) concurrently.
	var (
		mu       sync.Mutex
		acked    = map[string]int{}
		afterAck atomic.Int64
	)
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var acks []string
			for time.Now().Before(deadline) {
				mu.Lock()
				done := len(acked) >= n
				mu.Unlock()
				if done && len(acks) == 0 {
					return
				}
				r := a.poll(tokenA, id, map[string]any{"maxEvents": 100, "returnImmediately": false, "ack": acks})
				acks = acks[:0]
				mu.Lock()
				for jti := range r.Sets {
					if acked[jti] > 0 {
						afterAck.Add(1) // offered again after its ack was confirmed
					}
					acks = append(acks, jti)
				}
				mu.Unlock()
				// The acks go with the next poll; record them once sent.
				if len(acks) > 0 {
					a.poll(tokenA, id, map[string]any{"maxEvents": 0, "ack": acks})
					mu.Lock()
					for _, j := range acks {
						acked[j]++
					}
					mu.Unlock()
					acks = acks[:0]
				}
			}
		}()
	}
	wg.Wait()
	if len(acked) != n {
		t.Fatalf("%d distinct SETs acknowledged, want %d", len(acked), n)
	}
	for jti := range lost.Sets {
		if acked[jti] != 1 {
			t.Fatalf("SET %s from the killed process was acknowledged %d times, want once", jti, acked[jti])
		}
	}
	for jti, c := range acked {
		if c != 1 {
			t.Fatalf("SET %s acknowledged %d times", jti, c)
		}
	}
	if afterAck.Load() != 0 {
		t.Fatalf("%d SETs offered again after their ack", afterAck.Load())
	}
	eventually(t, 10*time.Second, "every intent settled", func() bool { return testenv.StreamMsgs(t, a.js.JS, queue.IntentStream) == 0 })
}
