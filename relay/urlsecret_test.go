package relay

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestNATSURLPasswordNotLogged: a NATS URL may carry user:password (the
// usual form in NATS_URL); the relay logs where it connected, but never the
// password.
func TestNATSURLPasswordNotLogged(t *testing.T) {
	t.Parallel()
	const password = "url-pw-secret-42"
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: "relay", Password: password, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	_, rcv := newSink(t)
	cfg, _ := testConfig(t, rcv.URL)
	cfg.NATS.URL = fmt.Sprintf("nats://relay:%s@%s", password, srv.Addr())

	core, logs := observer.New(zapcore.DebugLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessage("setrelay running").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("setrelay running").Len() == 0 {
		t.Fatal("no start-up log line")
	}
	for _, e := range logs.All() {
		line := e.Message + " " + fmt.Sprint(e.ContextMap())
		if strings.Contains(line, password) {
			t.Errorf("log leaks the NATS URL password: %s", line)
		}
	}
}
