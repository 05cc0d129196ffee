package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

const (
	testIssuer  = "https://transmitter.example.com/"
	typeRevoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	typeCred    = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	typePurged  = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
)

// env is one embedded JetStream with the setrelay streams and a consumer per
// receiver, and one signing key.
type env struct {
	t    *testing.T
	qcfg queue.Config
	srv  *server.Server
	nc   *nats.Conn
	js   jetstream.JetStream
	key  *signer.Key
	sig  *signer.Signer
	pub  *queue.Publisher
	log  *zap.Logger
}

func newEnv(t *testing.T, ackWait time.Duration, receivers ...string) *env {
	t.Helper()
	return newEnvQ(t, queue.Config{AckWait: ackWait, MaxDeliver: 100}, receivers...)
}

func newEnvQ(t *testing.T, qcfg queue.Config, receivers ...string) *env {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	qcfg.StoreDir, qcfg.Listen = t.TempDir(), "127.0.0.1:-1"
	srv, err := queue.StartEmbedded(qcfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	e := &env{t: t, qcfg: qcfg, srv: srv, log: log}
	e.nc = e.connect()
	e.js, err = jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := queue.Provision(ctx, e.js, qcfg, receivers); err != nil {
		t.Fatal(err)
	}
	e.key, err = signer.GenerateKey(jose.ES256, "test-key-1")
	if err != nil {
		t.Fatal(err)
	}
	e.sig, err = signer.New(e.key)
	if err != nil {
		t.Fatal(err)
	}
	e.pub = queue.NewPublisher(e.js, intent.Options{})
	return e
}

func (e *env) connect() *nats.Conn {
	e.t.Helper()
	nc, err := nats.Connect(e.srv.ClientURL())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	return nc
}

func (e *env) consumer(js jetstream.JetStream, name string) jetstream.Consumer {
	e.t.Helper()
	c, err := js.Consumer(context.Background(), queue.IntentStream, queue.ConsumerName(name))
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// pusher builds a real push.Client for an endpoint.
func (e *env) pusher(name, endpoint string) *push.Client {
	e.t.Helper()
	c, err := push.New(push.Config{Name: name, Endpoint: endpoint, InsecureHTTP: true, Timeout: 5 * time.Second, MaxConns: 32}, e.log, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) profile(name string) set.Profile {
	return set.Profile{Receiver: name, Issuer: testIssuer, Audience: []string{"https://" + name + ".example.org/"}, Placement: set.Placement("sub_id")}
}

// spec is a Receiver ready for the pool.
func (e *env) spec(js jetstream.JetStream, name, endpoint string, types ...string) Receiver {
	return Receiver{
		Name:     name,
		Consumer: e.consumer(js, name),
		Profile:  e.profile(name),
		SendKID:  true,
		Signer:   e.sig,
		Pusher:   e.pusher(name, endpoint),
		Types:    types,
		Retry:    RetryPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		Pause:    PausePolicy{Threshold: -1},
	}
}

// run starts a pool and returns a function that stops it and waits for Run.
func (e *env) run(cfg Config, js jetstream.JetStream, reg prometheus.Registerer) (stop func()) {
	e.t.Helper()
	if cfg.FetchWait == 0 {
		cfg.FetchWait = 500 * time.Millisecond
	}
	if cfg.InfoInterval == 0 {
		cfg.InfoInterval = 200 * time.Millisecond
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	p, err := New(cfg, Deps{JS: js, Log: e.log, Registerer: reg})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("Run did not return within 30s of cancel")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *env) publish(in *intent.Intent) {
	e.t.Helper()
	if _, err := e.pub.Publish(context.Background(), in); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) publishRaw(id string, data []byte) {
	e.t.Helper()
	if _, err := e.pub.PublishRaw(context.Background(), id, data, nil); err != nil {
		e.t.Fatal(err)
	}
}

// deadLetters returns every dead letter stored so far.
func (e *env) deadLetters() []queue.StoredDeadLetter {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dls, err := queue.NewDLQ(e.js).List(ctx, queue.Filter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return dls
}

// intentsLeft is how many intents the stream still holds. With interest
// retention an intent is removed once every consumer has acked or termed
// it, so 0 means every receiver is done with every intent.
func (e *env) intentsLeft() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), queue.IntentStream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

func (e *env) consumerInfo(name string) *jetstream.ConsumerInfo {
	e.t.Helper()
	info, err := e.consumer(e.js, name).Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// eventually polls cond every 20ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sessionRevoked(id string) *intent.Intent {
	return &intent.Intent{ID: id, Type: typeRevoked, Subject: map[string]any{"format": "email", "email": "alice@example.com"}}
}

func testIntent(id, typ string) *intent.Intent {
	in := &intent.Intent{ID: id, Type: typ, Subject: map[string]any{"format": "email", "email": "user-" + id + "@example.com"}}
	if typ == typeCred {
		in.Event = map[string]any{"credential_type": "password", "change_type": "update"}
	}
	return in
}

// devReceiver is the receiver package's conformance-checking handler
// behind httptest, with every SET it is sent also recorded raw for
// independent verification.
type devReceiver struct {
	*receiver.Receiver
	srv *httptest.Server
	mu  sync.Mutex
	raw [][]byte
}

func (e *env) devReceiver(name string) *devReceiver {
	e.t.Helper()
	jwks := signer.JWKS(e.key)
	rc, err := receiver.New(receiver.Config{
		NoAuth: true, Issuer: testIssuer, Audience: "https://" + name + ".example.org/",
		Keys: &jwks, Quiet: true,
	}, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	d := &devReceiver{Receiver: rc}
	h := rc.Handler()
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			body, _ := io.ReadAll(r.Body)
			d.mu.Lock()
			d.raw = append(d.raw, body)
			d.mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		h.ServeHTTP(w, r)
	}))
	e.t.Cleanup(d.srv.Close)
	return d
}

func (d *devReceiver) endpoint() string { return d.srv.URL + "/events" }

func (d *devReceiver) bodies() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([][]byte(nil), d.raw...)
}

// verifiedClaims checks a SET with lestrrat-go/jwx, independently of
// go-jose that signed it: signature with the public key, typ secevent+jwt,
// and returns the claims.
func verifiedClaims(t *testing.T, key *signer.Key, compact []byte) map[string]any {
	t.Helper()
	payload, err := jws.Verify(compact, jws.WithKey(jwa.ES256(), key.Public()))
	if err != nil {
		t.Fatalf("jwx rejects SET %q: %v", compact, err)
	}
	msg, err := jws.Parse(compact)
	if err != nil {
		t.Fatal(err)
	}
	if typ, _ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "secevent+jwt" {
		t.Fatalf("typ %q, want secevent+jwt", typ)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func eventTypes(claims map[string]any) []string {
	ev, _ := claims["events"].(map[string]any)
	var out []string
	for k := range ev {
		out = append(out, k)
	}
	return out
}

func idN(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

// publishMany publishes intents asynchronously, as a busy producer would,
// and waits for every ack: a synchronous publish per intent would make the
// test measure fsync latency rather than the worker.
func (e *env) publishMany(ins []*intent.Intent) {
	e.t.Helper()
	for _, in := range ins {
		data, err := queue.Encode(in, intent.Options{})
		if err != nil {
			e.t.Fatal(err)
		}
		msg := &nats.Msg{Subject: queue.IntentSubject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, in.ID)
		if _, err := e.js.PublishMsgAsync(msg); err != nil {
			e.t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		e.t.Fatal("async publishes not acked within 30s")
	}
}
