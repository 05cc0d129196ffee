package ops

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
)

func testKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMetricsServesInjectedRegistryAndRuntime(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "setrelay_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	s := newServer(t, Config{Registry: reg})
	resp := get(t, s.Handler(), "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b := body(t, resp)
	for _, want := range []string{"setrelay_test_total 3", "go_goroutines", "process_", "go_build_info"} {
		if !strings.Contains(b, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Building a second server on the same registry must not fail on the
	// already registered runtime collectors.
	if _, err := New(Config{Registry: reg}); err != nil {
		t.Errorf("second New on the same registry: %v", err)
	}
}

func TestNewRequiresRegistry(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a registry succeeded")
	}
}

func TestHealthz(t *testing.T) {
	s := newServer(t, Config{Ready: []NamedCheck{{"nats", func(context.Context) error { return errors.New("down") }}}})
	resp := get(t, s.Handler(), "/healthz")
	// Liveness does not depend on readiness: a process waiting for NATS is
	// alive and must not be restarted for it.
	if resp.StatusCode != http.StatusOK || body(t, resp) != "ok\n" {
		t.Fatalf("healthz = %d", resp.StatusCode)
	}
}

func TestReadyz(t *testing.T) {
	var natsUp, bound atomic.Bool
	s := newServer(t, Config{Ready: []NamedCheck{
		{"nats", func(context.Context) error {
			if !natsUp.Load() {
				return errors.New("not connected")
			}
			return nil
		}},
		{"consumers", func(context.Context) error {
			if !bound.Load() {
				return errors.New("2 of 2 consumers not bound")
			}
			return nil
		}},
	}})
	steps := []struct {
		nats, bound bool
		status      int
		want        []string
	}{
		{false, false, 503, []string{"[-]nats failed: not connected", "[-]consumers failed: 2 of 2 consumers not bound", "not ready"}},
		{true, false, 503, []string{"[+]nats ok", "[-]consumers failed"}},
		{true, true, 200, []string{"[+]nats ok", "[+]consumers ok", "ready"}},
		{false, true, 503, []string{"[-]nats failed"}},
	}
	for i, st := range steps {
		natsUp.Store(st.nats)
		bound.Store(st.bound)
		resp := get(t, s.Handler(), "/readyz")
		b := body(t, resp)
		if resp.StatusCode != st.status {
			t.Errorf("step %d: status %d, want %d (%s)", i, resp.StatusCode, st.status, b)
		}
		for _, w := range st.want {
			if !strings.Contains(b, w) {
				t.Errorf("step %d: body lacks %q:\n%s", i, w, b)
			}
		}
	}
}

func TestReadyzBoundsSlowChecks(t *testing.T) {
	s := newServer(t, Config{Ready: []NamedCheck{{"slow", func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}}}})
	rec := httptest.NewRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil).WithContext(ctx))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", rec.Code)
	}
	if time.Since(start) > CheckTimeout+time.Second {
		t.Errorf("readyz took %s", time.Since(start))
	}
}

func TestJWKS(t *testing.T) {
	k := testKey(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}
	s := newServer(t, Config{JWKS: set})
	resp := get(t, s.Handler(), "/jwks.json")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q", cc)
	}
	var got jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(body(t, resp)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Keys) != 1 || got.Keys[0].KeyID != "k1" || !got.Keys[0].IsPublic() || got.Keys[0].Algorithm != "ES256" {
		t.Errorf("served JWKS = %+v", got)
	}
	pub, ok := got.Keys[0].Key.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(k.Public()) {
		t.Errorf("served key does not match")
	}
}

func TestJWKSRefusesPrivateKeys(t *testing.T) {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: testKey(t), KeyID: "oops"}}}
	_, err := New(Config{Registry: prometheus.NewRegistry(), JWKS: set})
	if err == nil || !strings.Contains(err.Error(), `"oops"`) {
		t.Fatalf("New with a private key: %v", err)
	}
}

func TestEmptyJWKSIsAnEmptyList(t *testing.T) {
	s := newServer(t, Config{})
	if b := body(t, get(t, s.Handler(), "/jwks.json")); b != `{"keys":[]}` {
		t.Errorf("empty JWKS = %s", b)
	}
}

func TestMethodsAndUnknownPaths(t *testing.T) {
	s := newServer(t, Config{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/jwks.json", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /jwks.json = %d", rec.Code)
	}
	if r := get(t, s.Handler(), "/nope"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d", r.StatusCode)
	}
}

func TestStartServeShutdown(t *testing.T) {
	s := newServer(t, Config{Listen: "127.0.0.1:0"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("healthz over TCP = %d", resp.StatusCode)
	}
	// The port is taken: a second server must fail in Start, not later.
	clash := newServer(t, Config{Listen: s.Addr().String()})
	if err := clash.Start(); err == nil {
		t.Error("Start on a taken port succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := http.Get("http://" + s.Addr().String() + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
}
