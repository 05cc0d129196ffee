package relay

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// TestStartWarnsAboutOrphansWithThePruneCommand: 'setrelay run' finds the
// consumer of a receiver removed from the configuration and logs it with
// its pending count and the exact command that removes it.
func TestStartWarnsAboutOrphansWithThePruneCommand(t *testing.T) {
	j := testenv.StartJetStream(t, queue.Config{}, "local", "gone")
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	cfg, err := config.Load(rc.File)
	if err != nil {
		t.Fatal(err)
	}
	cfg.NATS.URL = j.URL()

	core, logs := observer.New(zapcore.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := svc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	want := "setrelay provision --prune --config " + rc.File
	var found bool
	for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(e.Message, want) && strings.Contains(line, `rcv_gone (receiver "gone", 0 pending)`) {
			found = true
		}
	}
	if !found {
		t.Errorf("no orphan warning naming rcv_gone and %q; logs: %v", want, logs.All())
	}
}
