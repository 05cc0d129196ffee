package relay

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// TestRunLeavesNoGoroutines: after Run returns, the embedded server, the
// NATS connection, the worker pool and the ops server are all gone.
func TestRunLeavesNoGoroutines(t *testing.T) {
	_, rcv := newSink(t)
	cfg, _ := testConfig(t, rcv.URL)
	ignore := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := Start(ctx, cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	time.Sleep(200 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	goleak.VerifyNone(t, ignore)
}
