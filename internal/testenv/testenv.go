// Package testenv starts the real parts setrelay's tests run against (an
// embedded JetStream with the setrelay streams, signing keys on disk, a
// one-receiver relay configuration), so each test package does not carry its
// own copy. It is imported only by tests; it never mocks anything.
package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// JetStream is an embedded JetStream server with the setrelay streams, and
// a client connected to it over TCP as a producer would be.
type JetStream struct {
	Server *server.Server
	Conn   *nats.Conn
	JS     jetstream.JetStream
}

// URL is the server's client URL, for --nats-url and nats.url.
func (j *JetStream) URL() string { return j.Server.ClientURL() }

// StartJetStream starts an embedded server on a random port with its store
// in tb.TempDir(), using cfg's stream and consumer settings, and provisions
// the streams with a consumer per receiver. Interest retention keeps only
// what some consumer wants, so a test that counts stored intents names at
// least one receiver. Server and connection are closed when the test ends.
func StartJetStream(tb testing.TB, cfg queue.Config, receivers ...string) *JetStream {
	tb.Helper()
	cfg.Listen, cfg.StoreDir = "127.0.0.1:-1", tb.TempDir()
	srv, err := queue.StartEmbedded(cfg, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := queue.Provision(ctx, js, cfg, receivers); err != nil {
		tb.Fatal(err)
	}
	return &JetStream{Server: srv, Conn: nc, JS: js}
}

// WriteKey generates a key and writes its private half as PEM, mode 0600,
// to dir/<id>.pem, as `setrelay keys generate` does.
func WriteKey(tb testing.TB, dir string, alg jose.SignatureAlgorithm, id string) (string, *signer.Key) {
	tb.Helper()
	k, err := signer.GenerateKey(alg, id)
	if err != nil {
		tb.Fatal(err)
	}
	b, err := k.PrivatePEM()
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, id+".pem")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path, k
}

// RelayOptions shape the configuration WriteRelayConfig writes.
type RelayOptions struct {
	// Endpoint is the receiver's push URL; plain http is allowed.
	Endpoint string
	// Concurrency is worker.concurrency; 0 means 4.
	Concurrency int
	// GracePeriod is worker.grace_period; 0 means 5s.
	GracePeriod time.Duration
	// Events are the receiver's requested event types; none means all.
	Events []string
}

// RelayConfig is a relay configuration as a test uses it: loaded, and the
// file it was loaded from, for the CLI's --config.
type RelayConfig struct {
	Config *config.Config
	File   string
	// Key signs the receiver's SETs (ES256, kid "k1"); tests verify with it.
	Key *signer.Key
}

// WriteRelayConfig writes and loads the configuration of a relay with one
// receiver, "local" (issuer https://issuer.example/, audience
// https://rcv.example/), an embedded JetStream on a random port and the ops
// server on a random port, with every file in a fresh tb.TempDir().
func WriteRelayConfig(tb testing.TB, o RelayOptions) RelayConfig {
	tb.Helper()
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.GracePeriod == 0 {
		o.GracePeriod = 5 * time.Second
	}
	dir := tb.TempDir()
	keyFile, key := WriteKey(tb, dir, jose.ES256, "k1")
	events := ""
	if len(o.Events) > 0 {
		events = "    events: [" + strings.Join(o.Events, ", ") + "]\n"
	}
	y := fmt.Sprintf(`
issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: {listen: "127.0.0.1:-1", store_dir: %s}
ops: {listen: "127.0.0.1:0"}
worker: {concurrency: %d, grace_period: %s}
receivers:
  - name: local
    endpoint: %s
    audience: https://rcv.example/
    key: k1
    insecure_http: true
%s`, keyFile, filepath.Join(dir, "js"), o.Concurrency, o.GracePeriod, o.Endpoint, events)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse([]byte(y), path, func(string) (string, bool) { return "", false })
	if err != nil {
		tb.Fatal(err)
	}
	return RelayConfig{Config: cfg, File: path, Key: key}
}

// StreamMsgs is how many messages the named stream holds now. With the
// intents stream's Interest retention, 0 means every consumer has settled
// every intent.
func StreamMsgs(tb testing.TB, js jetstream.JetStream, stream string) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}
