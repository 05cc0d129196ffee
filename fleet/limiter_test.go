package fleet

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRateLimiterLoweredRateAppliesAtOnce: waiters reserve nothing, so
// after SetRate the pace is the new one, not the old one's queue.
func TestRateLimiterLoweredRateAppliesAtOnce(t *testing.T) {
	l := NewRateLimiter(1000, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.Wait(ctx) == nil {
				n.Add(1)
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	l.SetRate(20)
	before := n.Load()
	time.Sleep(time.Second)
	got := n.Load() - before
	cancel()
	wg.Wait()
	// 20/s for one second, plus at most a couple of tokens saved before the
	// change (burst is a tenth of a second, at least one).
	if got > 24 || got < 10 {
		t.Fatalf("%d tokens in the second after lowering the rate to 20/s; want about 20", got)
	}
}

func TestRateLimiterZeroBlocksUntilRaised(t *testing.T) {
	l := NewRateLimiter(0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := l.Wait(ctx); err == nil {
		t.Fatal("Wait at rate 0 returned a token")
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	l.SetRate(100)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after the rate was raised")
	}
}

func TestGate(t *testing.T) {
	g := NewGate(2)
	ctx := context.Background()
	if err := g.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	g.SetLimit(1)
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := g.Acquire(short); err == nil {
		t.Fatal("Acquire succeeded with 2 held and the limit lowered to 1")
	}
	g.Release()
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if err := g.Acquire(short2); err == nil {
		t.Fatal("Acquire succeeded with 1 held at limit 1")
	}
	got := make(chan error, 1)
	go func() { got <- g.Acquire(ctx) }()
	time.Sleep(20 * time.Millisecond)
	g.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if g.Held() != 1 {
		t.Fatalf("held %d, want 1", g.Held())
	}
}
