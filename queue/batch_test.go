package queue_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

func TestBatchPublisherReportsEveryResultInOrderWithinWindow(t *testing.T) {
	const n, window = 20000, 256
	env := startEnv(t, testConfig(t), "govuk")

	var added, reported atomic.Int64
	var maxInFlight int64
	var results []queue.BatchResult
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{
		Window: window,
		OnResult: func(r queue.BatchResult) {
			if inFlight := added.Load() - reported.Load(); inFlight > maxInFlight {
				maxInFlight = inFlight
			}
			reported.Add(1)
			// Keep only what the test checks, as a backfill would.
			results = append(results, queue.BatchResult{ID: r.ID, Ref: r.Ref, Sequence: r.Sequence, Duplicate: r.Duplicate, Err: r.Err})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	payloads := ids("bulk", n)
	for i, id := range payloads {
		added.Add(1)
		if err := bp.Add(ctxT(t), id, intentBytes(t, id), int64(i)); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	// A re-run of part of the file is deduplicated, not stored again.
	for i, id := range payloads[:100] {
		added.Add(1)
		if err := bp.Publish(ctxT(t), newIntent(id), int64(n+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}

	if len(results) != n+100 {
		t.Fatalf("got %d results for %d publishes", len(results), n+100)
	}
	for i, r := range results {
		if r.Ref != int64(i) {
			t.Fatalf("result %d has ref %d: results out of order", i, r.Ref)
		}
		if r.Err != nil {
			t.Fatalf("result %d: %v", i, r.Err)
		}
		if wantDup := i >= n; r.Duplicate != wantDup {
			t.Fatalf("result %d (%s): duplicate=%v, want %v", i, r.ID, r.Duplicate, wantDup)
		}
		if i >= n && r.Sequence != results[i-n].Sequence {
			t.Fatalf("duplicate %s reports seq %d, original %d", r.ID, r.Sequence, results[i-n].Sequence)
		}
	}
	if maxInFlight > window+1 {
		t.Errorf("up to %d publishes were in flight with a window of %d", maxInFlight, window)
	}
	if st := bp.Stats(); st.Stored != n || st.Duplicates != 100 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	if got := streamMsgs(t, env.js, queue.IntentStream); got != n {
		t.Errorf("stream holds %d, want %d", got, n)
	}
	if err := bp.Add(ctxT(t), "late", intentBytes(t, "late"), 0); !errors.Is(err, queue.ErrBatchClosed) {
		t.Errorf("Add after Close: %v", err)
	}
}

func TestBatchPublisherReportsStreamFullPerIntent(t *testing.T) {
	cfg := testConfig(t)
	cfg.StreamMaxMsgs = 10
	env := startEnv(t, cfg, "govuk")
	var stored, full int
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: 4, OnResult: func(r queue.BatchResult) {
		switch {
		case r.Err == nil:
			stored++
		case errors.Is(r.Err, queue.ErrStreamFull):
			full++
		default:
			t.Errorf("unexpected error for %s: %v", r.ID, r.Err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids("cap", 15) {
		if err := bp.Add(ctxT(t), id, intentBytes(t, id), int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if stored != 10 || full != 5 {
		t.Fatalf("stored %d, full %d; want 10 and 5", stored, full)
	}
}

func TestBatchFlushHonoursContext(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	block := make(chan struct{})
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: 2, OnResult: func(queue.BatchResult) { <-block }})
	if err != nil {
		t.Fatal(err)
	}
	if err := bp.Add(ctxT(t), "f-1", intentBytes(t, "f-1"), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := bp.Flush(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with a stuck result: %v", err)
	}
	close(block)
	if err := bp.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestBatchPublisherSurvivesServerRestart(t *testing.T) {
	const n = 5000
	cfg := testConfig(t)
	env := startEnv(t, cfg, "govuk")
	restartCfg := cfg
	restartCfg.Listen = env.srv.Addr().String() // same port, so the client reconnects

	var ok, dup, failed, resent atomic.Int64
	seen := make(map[string]bool, n)
	restarted := make(chan struct{})
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: 128, AckTimeout: 2 * time.Second, OnResult: func(r queue.BatchResult) {
		seen[r.ID] = true
		if r.Sends > 1 {
			resent.Add(1)
		}
		switch {
		case r.Err != nil:
			failed.Add(1)
			t.Logf("failed %s: %v", r.ID, r.Err)
		}
		switch {
		case r.Err != nil:
		case r.Duplicate:
			dup.Add(1)
		default:
			ok.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(restarted)
		for ok.Load() < n/5 {
			time.Sleep(time.Millisecond)
		}
		t0 := time.Now()
		env.srv.Shutdown()
		env.srv.WaitForShutdown()
		srv, err := queue.StartEmbedded(restartCfg, zap.NewNop())
		t.Logf("restart took %v", time.Since(t0))
		if err != nil {
			t.Errorf("restart: %v", err)
			return
		}
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	}()
	for i, id := range ids("rs", n) {
		if err := bp.Add(ctxT(t), id, intentBytes(t, id), int64(i)); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	<-restarted
	if err := bp.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("results for %d of %d intents", len(seen), n)
	}
	if failed.Load() != 0 {
		t.Fatalf("%d publishes failed despite retries", failed.Load())
	}
	// Every intent is stored exactly once: acks lost in the restart were
	// re-sent and deduplicated.
	if got := streamMsgs(t, env.js, queue.IntentStream); got != n {
		t.Fatalf("stream holds %d, want %d (ok %d, dup %d)", got, n, ok.Load(), dup.Load())
	}
	if resent.Load() == 0 {
		t.Error("no publish was re-sent: the restart did not exercise recovery")
	}
	t.Logf("stored %d, re-sent %d, of which already stored %d", ok.Load(), resent.Load(), dup.Load())
}
