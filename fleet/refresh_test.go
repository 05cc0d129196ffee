package fleet

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// unreachable holds one member's reads or writes of the real bucket until
// their context is done, as a NATS connection that stopped answering does,
// while everything else goes through.
type unreachable struct{ reads, writes atomic.Bool }

type heldStream struct {
	jetstream.Stream
	*unreachable
}

func (s heldStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	if s.reads.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("held read: %w", ctx.Err())
	}
	return s.Stream.Info(ctx, opts...)
}

type heldKV struct {
	jetstream.KeyValue
	*unreachable
}

func (k heldKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if k.reads.Load() {
		<-ctx.Done()
		return nil, fmt.Errorf("held read: %w", ctx.Err())
	}
	return k.KeyValue.Get(ctx, key)
}

func (k heldKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if k.writes.Load() {
		<-ctx.Done()
		return 0, fmt.Errorf("held write: %w", ctx.Err())
	}
	return k.KeyValue.Put(ctx, key, value)
}

// TestUnreachableMemberNeverOvercommits cuts one member of three off the
// bucket for three TTLs and samples every member's share all along: the
// shares never add up to more than the limit. With only its reads held, the
// member must keep refreshing its entry, so the others keep counting it and
// it keeps its share; with its writes held too, it must drop to nothing
// before its entry can expire, since the others then take the whole limit.
func TestUnreachableMemberNeverOvercommits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		writes    bool
		wantShare Limits // the cut-off member's share at the end of the outage
	}{
		{"reads", false, Limits{Rate: 30, InFlight: 3}},
		{"reads and writes", true, Limits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := testenv.StartJetStream(t, queue.Config{})
			limits := map[string]Limits{"r": {Rate: 90, InFlight: 9}}
			// A member whose reads time out writes once per read timeout
			// (one heartbeat) plus the write itself, and counts as orphaned
			// once its last write is TTL - 2 heartbeats old. By default
			// (4 s, 1 s) that leaves a second of margin; a sixth of the TTL
			// keeps a comparable margin here, so that a loaded CI machine's
			// slow write does not turn the "reads" case into "reads and
			// writes".
			const ttl, hb = 1200 * time.Millisecond, 200 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()

			var members []*Member
			for range 3 {
				m, err := Join(ctx, env.JS, Options{Limits: limits, TTL: ttl, Heartbeat: hb})
				if err != nil {
					t.Fatal(err)
				}
				members = append(members, m)
			}
			cut := &unreachable{}
			members[2].stream = heldStream{members[2].stream, cut}
			members[2].kv = heldKV{members[2].kv, cut}

			rctx, stopRunning := context.WithCancel(ctx)
			done := make(chan struct{}, len(members))
			defer func() {
				stopRunning()
				for range members {
					<-done
				}
			}()
			for _, m := range members {
				go func() { defer func() { done <- struct{}{} }(); m.Run(rctx) }()
			}
			sum := func() (Limits, []Limits) {
				var total Limits
				var each []Limits
				for _, m := range members {
					s := m.Shares()["r"]
					total.Rate += s.Rate
					total.InFlight += s.InFlight
					each = append(each, s)
				}
				return total, each
			}
			settle := func(what string) {
				t.Helper()
				deadline := time.Now().Add(3 * ttl)
				for {
					total, each := sum()
					if total.InFlight == 9 && each[0].Rate == 30 && each[1].Rate == 30 && each[2].Rate == 30 {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: shares %+v; want 30/s and 3 each", what, each)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			settle("three members")

			cut.reads.Store(true)
			cut.writes.Store(tc.writes)
			var samples, over int
			var first string
			for end := time.Now().Add(3 * ttl); time.Now().Before(end); {
				total, each := sum()
				samples++
				if total.Rate > 90+1e-6 || total.InFlight > 9 {
					if over == 0 {
						first = fmt.Sprintf("%+v", each)
					}
					over++
				}
				time.Sleep(5 * time.Millisecond)
			}
			_, each := sum()
			if over > 0 {
				t.Fatalf("shares exceeded the limit at %d of %d samples while a member could not reach the bucket, first %s", over, samples, first)
			}
			if each[2] != tc.wantShare {
				t.Fatalf("cut-off member's share after %v = %+v; want %+v", 3*ttl, each[2], tc.wantShare)
			}
			if tc.writes && (each[0].Rate != 45 || each[1].Rate != 45) {
				t.Fatalf("the others hold %+v after the cut-off member's entry expired; want its share taken (45/s each)", each[:2])
			}

			cut.reads.Store(false)
			cut.writes.Store(false)
			settle("after the bucket answers again")
		})
	}
}
