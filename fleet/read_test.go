package fleet

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// TestReadSeesEveryLiveMemberDuringHeartbeats reads the fleet over and over
// while the other members keep re-writing their entries, as their heartbeats
// do: every read must list every member. A read that ends early (a KV
// watcher trusting a delivered message's pending count, which concurrent
// puts can bring to zero before the replay is done) misses live members,
// and a member that misses the others takes their shares too.
func TestReadSeesEveryLiveMemberDuringHeartbeats(t *testing.T) {
	env := testenv.StartJetStream(t, queue.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	limits := map[string]Limits{"r": {Rate: 90}}
	var members []*Member
	for range 4 {
		m, err := Join(ctx, env.JS, Options{Limits: limits, TTL: time.Minute, Heartbeat: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}

	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range members[1:] {
		wg.Go(func() {
			for wctx.Err() == nil {
				if err := m.announce(wctx); err != nil && wctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		})
	}
	const reads = 300
	var short int
	for i := range reads {
		live, err := members[0].read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != len(members) {
			if short == 0 {
				t.Logf("read %d listed %d of %d members", i, len(live), len(members))
			}
			short++
		}
	}
	stopWriters()
	wg.Wait()
	if short > 0 {
		t.Fatalf("%d of %d reads missed a live member", short, reads)
	}
}
