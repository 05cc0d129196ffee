package gctune

import (
	"context"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, 24 * mib, 600},          // no collection yet: taken as 4 MiB
		{1 * mib, 24 * mib, 600},    // below the runtime's minimum heap: as 4 MiB
		{4 * mib, 24 * mib, 600},    // goal 28 MiB
		{1 * mib, 100 * mib, 1000},  // capped
		{8 * mib, 24 * mib, 300},    // goal 32 MiB
		{24 * mib, 24 * mib, 100},   // headroom = live: the default
		{200 * mib, 24 * mib, 100},  // a big heap is collected as with GOGC=100
		{24*mib - 1, 24 * mib, 100}, // rounding never goes below the default
		{4 * mib, DefaultHeadroom, 200},
		{0, DefaultHeadroom, 200}, // at start: min heap 8 MiB, not 40
	} {
		if got := Percent(c.live, c.headroom); got != c.want {
			t.Errorf("Percent(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

// TestRunSetsAndRestores: Run raises GOGC for this test binary's small
// heap and puts the original back when its context ends. Not parallel: GOGC
// is process-wide.
func TestRunSetsAndRestores(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	orig := Current()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		Run(ctx, DefaultHeadroom, 10*time.Millisecond)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if Current() > 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after 5s; Run should raise it for a small heap", Current())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if p := Current(); p != orig {
		t.Errorf("GOGC %d after Run returned, want the original %d", p, orig)
	}
}

// TestRunLeavesOperatorSetting: with GOGC in the environment, Run returns
// at once and touches nothing.
func TestRunLeavesOperatorSetting(t *testing.T) {
	t.Setenv("GOGC", "150")
	orig := Current()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	Run(ctx, DefaultHeadroom, time.Millisecond) // must return without waiting for ctx
	if ctx.Err() != nil {
		t.Fatal("Run waited for its context with GOGC set")
	}
	if p := Current(); p != orig {
		t.Errorf("GOGC changed to %d", p)
	}
}
