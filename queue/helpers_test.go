package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// testEnv is a real embedded JetStream with the streams provisioned.
type testEnv struct {
	cfg queue.Config
	srv *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

func testConfig(t testing.TB) queue.Config {
	return queue.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1"}
}

// startEnv starts an embedded server for cfg, connects over TCP (as a
// producer would) and provisions receivers.
func startEnv(t testing.TB, cfg queue.Config, receivers ...string) *testEnv {
	t.Helper()
	srv, err := queue.StartEmbedded(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("StartEmbedded: %v", err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	env := &testEnv{cfg: cfg, srv: srv}
	env.connect(t)
	if receivers != nil {
		if err := queue.Provision(ctxT(t), env.js, cfg, receivers); err != nil {
			t.Fatalf("Provision: %v", err)
		}
	}
	return env
}

func (e *testEnv) connect(t testing.TB) {
	t.Helper()
	cfg := e.cfg
	cfg.URL = e.srv.ClientURL()
	nc, err := queue.Connect(ctxT(t), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	e.nc, e.js = nc, js
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newIntent(id string) *intent.Intent {
	return &intent.Intent{
		ID:      id,
		Type:    "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice@example.com"},
	}
}

func intentBytes(t testing.TB, id string) []byte {
	t.Helper()
	data, err := queue.Encode(newIntent(id), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// fetchAll pulls up to n messages from receiver's durable consumer, waiting
// at most wait for them.
func fetchAll(t testing.TB, js jetstream.JetStream, receiver string, n int, wait time.Duration) []jetstream.Msg {
	t.Helper()
	cons, err := js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName(receiver))
	if err != nil {
		t.Fatalf("consumer for %s: %v", receiver, err)
	}
	var msgs []jetstream.Msg
	deadline := time.Now().Add(wait)
	for len(msgs) < n && time.Now().Before(deadline) {
		batch, err := cons.Fetch(n-len(msgs), jetstream.FetchMaxWait(time.Until(deadline)))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
	}
	return msgs
}

func streamMsgs(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	return testenv.StreamMsgs(t, js, name)
}

// eventually polls cond until it holds or 5 s pass; JetStream applies
// interest-based removal asynchronously after the ack.
func eventually(t testing.TB, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
	}
	t.Fatalf("%s: never happened; last state: %s", what, last)
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return out
}

var optsNone = intent.Options{}

func itoa[T ~int | ~uint64 | ~int64](n T) string { return fmt.Sprint(n) }

// testLogger shows logs for failing tests but keeps benchmark output clean.
func testLogger(t testing.TB) *zap.Logger {
	if _, bench := t.(*testing.B); bench {
		return zap.NewNop()
	}
	return zaptest.NewLogger(t)
}
