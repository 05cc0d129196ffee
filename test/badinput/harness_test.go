package badinput

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/signer"
)

const (
	issuer = "https://transmitter.example.com/"
	keyID  = "badinput-key-1"
)

// env is one running relay (embedded JetStream, worker pool, push clients)
// built by relay.Start from a configuration made in code, as `setrelay run`
// builds it from YAML.
type env struct {
	t   *testing.T
	js  jetstream.JetStream
	pub *queue.Publisher
}

// newKey generates the signing key and writes it where the config points.
func newKey(t *testing.T) (*signer.Key, string) {
	t.Helper()
	key, err := signer.GenerateKey(jose.ES256, keyID)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := key.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return key, file
}

// startRelay starts the relay with the given receivers and runs its pool
// until the test ends.
func startRelay(t *testing.T, keyFile string, receivers []config.Receiver) *env {
	t.Helper()
	cfg := &config.Config{
		Issuer: issuer,
		Keys:   []config.Key{{ID: keyID, File: keyFile, Alg: "ES256"}},
		NATS: config.NATS{
			StoreDir: filepath.Join(t.TempDir(), "jetstream"),
			Listen:   "127.0.0.1:-1",
			Replicas: 1,

			MaxAckPending:   config.DefaultMaxAckPending,
			AckWait:         config.DefaultAckWait,
			DuplicateWindow: config.DefaultDuplicateWindow,
		},
		Worker:    config.Worker{Concurrency: 32, GracePeriod: time.Second, FetchWait: 500 * time.Millisecond},
		Ops:       config.Ops{Listen: "127.0.0.1:0"},
		Log:       config.Log{Level: "warn", Format: "console"},
		Receivers: receivers,
	}
	cfg.FillDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := relay.Start(ctx, cfg, log, prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop within 30s")
		}
	})
	return &env{t: t, js: svc.JetStream(), pub: queue.NewPublisher(svc.JetStream(), intent.Options{})}
}

// deadLetters lists the dead letters of one receiver.
func (e *env) deadLetters(receiver string) []queue.StoredDeadLetter {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dls, err := queue.NewDLQ(e.js).List(ctx, queue.Filter{Receiver: receiver})
	if err != nil {
		e.t.Fatal(err)
	}
	return dls
}

// intentsLeft is how many intents the stream still holds. The stream has
// interest retention, so 0 means every receiver acked or termed every intent:
// nothing is stuck, redelivered in a loop or lost between the two streams.
func (e *env) intentsLeft() uint64 {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitFor polls cond every 20ms until it holds or d passes, then fails with what.
func waitFor(t *testing.T, d time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting: %s", d, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
