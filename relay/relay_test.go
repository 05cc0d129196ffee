package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// sink is a receiver answering 202 and keeping every SET it gets.
type sink struct {
	mu   sync.Mutex
	sets []string
	got  chan struct{}
}

func newSink(t *testing.T) (*sink, *httptest.Server) {
	s := &sink{got: make(chan struct{}, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/secevent+jwt" {
			http.Error(w, `{"err":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.sets = append(s.sets, string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		s.got <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func testConfig(t *testing.T, endpoint string) (*config.Config, *signer.Key) {
	t.Helper()
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: endpoint, Events: []string{"risc.account-disabled"}})
	return rc.Config, rc.Key
}

func TestRunDeliversAndShutsDown(t *testing.T) {
	t.Parallel()
	sk, rcv := newSink(t)
	cfg, key := testConfig(t, rcv.URL+"/events")
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	// A producer reaches the embedded server over its client port.
	nc, err := nats.Connect(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub := queue.NewPublisher(js, intent.Options{})
	const n = 5
	for i := range n {
		in, err := intent.Decode([]byte(fmt.Sprintf(`{"id":"smoke-%d","type":"risc.account-disabled","subject":{"format":"email","email":"u%d@example.com"},"event":{"reason":"hijacking"}}`, i, i)), intent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	// A type the receiver did not request is skipped, not delivered.
	other, err := intent.Decode([]byte(`{"id":"smoke-other","type":"caep.session-revoked","subject":{"format":"email","email":"x@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, other); err != nil {
		t.Fatal(err)
	}

	deadline := time.After(20 * time.Second)
	for i := range n {
		select {
		case <-sk.got:
		case <-deadline:
			t.Fatalf("only %d of %d SETs delivered", i, n)
		}
	}

	// Ops: ready, and the JWKS publishes the signing key.
	base := "http://" + svc.OpsAddr().String()
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d: %s", code, body)
	}
	_, jwks := httpGet(t, base+"/jwks.json")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwks), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "k1" {
		t.Errorf("/jwks.json = %s (%v)", jwks, err)
	}
	if _, metrics := httpGet(t, base+"/metrics"); !strings.Contains(metrics, "setrelay_push_results_total") {
		t.Errorf("/metrics lacks the push metrics")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after a clean shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}

	// Every SET verifies with the published key and names its intent's subject.
	sk.mu.Lock()
	defer sk.mu.Unlock()
	if len(sk.sets) != n {
		t.Errorf("receiver got %d SETs, want %d (the unrequested type must not be sent)", len(sk.sets), n)
	}
	jtis := map[string]bool{}
	for _, s := range sk.sets {
		// Verified with golang-jwt, independently of the go-jose signer.
		var claims struct {
			jwt.RegisteredClaims
			Events map[string]map[string]any `json:"events"`
		}
		if _, err := jwt.ParseWithClaims(s, &claims, func(*jwt.Token) (any, error) { return key.Public(), nil },
			jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt()); err != nil {
			t.Fatalf("SET does not verify: %v", err)
		}
		if claims.Issuer != "https://issuer.example/" || len(claims.Audience) != 1 || claims.Audience[0] != "https://rcv.example/" {
			t.Errorf("claims = %+v", claims)
		}
		if _, ok := claims.Events["https://schemas.openid.net/secevent/risc/event-type/account-disabled"]; !ok {
			t.Errorf("events = %v", claims.Events)
		}
		jtis[claims.ID] = true
		hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(s, ".")[0])
		if !strings.Contains(string(hdr), `"kid":"k1"`) || !strings.Contains(string(hdr), `"typ":"secevent+jwt"`) {
			t.Errorf("header = %s", hdr)
		}
	}
	if len(jtis) != n {
		t.Errorf("%d distinct jti for %d intents", len(jtis), n)
	}
	if _, err := nats.Connect(svc.ClientURL(), nats.MaxReconnects(0), nats.Timeout(time.Second)); err == nil {
		t.Error("embedded NATS still accepts connections after Run returned")
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartReportsEveryBadKey(t *testing.T) {
	t.Parallel()
	cfg, _ := testConfig(t, "http://127.0.0.1:1/")
	cfg.Keys[0].File = filepath.Join(t.TempDir(), "missing.pem")
	cfg.Keys = append(cfg.Keys, config.Key{ID: "k2", File: cfg.Keys[0].File, Alg: "RS256"})
	_, err := Start(context.Background(), cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 2 || ce.Problems[0].Path != "keys[0].file" || ce.Problems[1].Path != "keys[1].file" {
		t.Fatalf("Start with two missing keys: %v", err)
	}
	// A first run without the key must say how to create it.
	want := "setrelay keys generate --alg " + cfg.Keys[0].Alg + " --id " + cfg.Keys[0].ID + " --out " + cfg.Keys[0].File
	if !strings.Contains(ce.Problems[0].Message, want) {
		t.Errorf("missing key problem %q does not say %q", ce.Problems[0].Message, want)
	}
}

func TestStartFailsCleanlyOnTakenOpsPort(t *testing.T) {
	t.Parallel()
	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	cfg, _ := testConfig(t, "http://127.0.0.1:1/")
	cfg.Ops.Listen = strings.TrimPrefix(taken.URL, "http://")
	_, err := Start(context.Background(), cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "ops: listen") {
		t.Fatalf("Start with a taken ops port: %v", err)
	}
	// The embedded server started before the failure is stopped again: a
	// second Start on the same store directory works.
	cfg.Ops.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("second Start on the same store: %v", err)
	}
	cancel()
	if err := svc.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionAgainstRunningServer(t *testing.T) {
	t.Parallel()
	_, rcv := newSink(t)
	cfg, _ := testConfig(t, rcv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	// Add a receiver and provision it through the client port, as
	// `setrelay provision` does.
	cfg2 := *cfg
	cfg2.NATS.URL = svc.ClientURL()
	cfg2.Receivers = append(append([]config.Receiver(nil), cfg.Receivers...), cfg.Receivers[0])
	cfg2.Receivers[1].Name = "second"
	if err := Provision(ctx, &cfg2, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.JetStream().Consumer(ctx, queue.IntentStream, queue.ConsumerName("second")); err != nil {
		t.Errorf("consumer of the new receiver: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConnectWithoutRunningServerExplains(t *testing.T) {
	cfg, _ := testConfig(t, "http://127.0.0.1:1/")
	cfg.NATS.Listen = "127.0.0.1:1" // nothing listens on port 1
	t.Setenv("NATS_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := Connect(ctx, cfg, zaptest.NewLogger(t))
	if err == nil || !strings.Contains(err.Error(), "embedded server of a running 'setrelay run'") {
		t.Fatalf("Connect with nothing listening: %v", err)
	}
	if err := Provision(ctx, cfg, zaptest.NewLogger(t)); err == nil {
		t.Fatal("Provision with nothing listening succeeded")
	}
}

func TestQueueConfigURLPrecedence(t *testing.T) {
	cfg, _ := testConfig(t, "http://127.0.0.1:1/")
	t.Setenv("NATS_URL", "nats://from-env:4222")
	t.Setenv("NATS_CREDS", "/from/env.creds")
	cfg.NATS.URL = "nats://from-flag:4222"
	q := queueConfig(cfg)
	if q.URL != "nats://from-flag:4222" {
		t.Errorf("URL = %q: a URL set after Load (a flag) must win over NATS_URL", q.URL)
	}
	if q.Creds != "/from/env.creds" {
		t.Errorf("Creds = %q: the other NATS_* variables still apply", q.Creds)
	}
}

// A private event type reaches the receiver that allowed and requested it,
// and only that one: before, the worker decoded without private types and
// dead-lettered the intent as invalid_intent for every receiver.
func TestPrivateEventTypeDelivered(t *testing.T) {
	t.Parallel()
	const custom = "https://example.com/secevent/custom"
	priv, privSrv := newSink(t)
	all, allSrv := newSink(t)
	cfg, _ := testConfig(t, privSrv.URL+"/events")
	cfg.Receivers[0].AllowPrivateTypes = true
	cfg.Receivers[0].Events = []string{custom}
	// A receiver asking for every type, without allow_private_types, must
	// skip the private type rather than get it or dead-letter it.
	other := cfg.Receivers[0]
	other.Name, other.Endpoint, other.AllowPrivateTypes, other.Events = "all", allSrv.URL+"/events", false, nil
	cfg.Receivers = append(cfg.Receivers, other)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	pub := queue.NewPublisher(svc.JetStream(), intent.Options{AllowPrivateTypes: true})
	in, err := intent.Decode([]byte(`{"id":"priv-1","type":"`+custom+`","subject":{"format":"email","email":"p@example.com"},"event":{"detail":"x"}}`), intent.Options{AllowPrivateTypes: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
	// A known type afterwards reaches "all": once it has, "all" has
	// settled the private intent before it (one consumer, in order).
	known, err := intent.Decode([]byte(`{"id":"known-1","type":"risc.account-disabled","subject":{"format":"email","email":"k@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Publish(ctx, known); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*sink{priv, all} {
		select {
		case <-s.got:
		case <-time.After(20 * time.Second):
			t.Fatal("a SET was not delivered")
		}
	}
	// Nothing was dead-lettered.
	dls, err := queue.NewDLQ(svc.JetStream()).List(ctx, queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, dl := range dls {
		t.Errorf("dead letter for %s: %s %s", dl.Receiver, dl.Reason, dl.Description)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	priv.mu.Lock()
	defer priv.mu.Unlock()
	if len(priv.sets) != 1 {
		t.Fatalf("private-type receiver got %d SETs, want 1", len(priv.sets))
	}
	claims := jwtClaims(t, priv.sets[0])
	if _, ok := claims["events"].(map[string]any)[custom]; !ok {
		t.Errorf("events = %v, want %s", claims["events"], custom)
	}
	all.mu.Lock()
	defer all.mu.Unlock()
	if len(all.sets) != 1 {
		t.Fatalf("all-types receiver got %d SETs, want 1 (the known type only)", len(all.sets))
	}
	if _, ok := jwtClaims(t, all.sets[0])["events"].(map[string]any)[custom]; ok {
		t.Error("receiver without allow_private_types got the private type")
	}
}

// jwtClaims decodes a compact JWS's payload without verifying it (the
// other tests verify signatures).
func jwtClaims(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", jws)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}
