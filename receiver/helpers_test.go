package receiver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

const (
	testIssuer   = "https://transmitter.example/"
	testAudience = "https://receiver.example/events"
	testClient   = "client-1"
	testSecret   = "s3cret:with/odd+chars"
	eventType    = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
)

// clock is a settable clock for token expiry, outages and iat checks.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is a real key pair with the algorithm it signs with.
type testKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer
}

var (
	rsaOnce sync.Once
	rsaPriv *rsa.PrivateKey
)

// newKey generates a key; RSA keys are generated once per test binary
// because 2048-bit generation is slow on a shared machine.
func newKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) testKey {
	t.Helper()
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.RS256, jose.RS384, jose.PS256:
		rsaOnce.Do(func() { rsaPriv, err = rsa.GenerateKey(rand.Reader, 2048) })
		priv = rsaPriv
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testKey{alg: alg, kid: kid, priv: priv}
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

func jwks(keys ...testKey) *jose.JSONWebKeySet {
	s := &jose.JSONWebKeySet{}
	for _, k := range keys {
		s.Keys = append(s.Keys, k.public())
	}
	return s
}

// sign makes a compact JWS directly with go-jose. typ "" leaves typ out.
func sign(t testing.TB, k testKey, typ string, payload []byte) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	var key any = k.priv
	if k.kid != "" {
		key = jose.JSONWebKey{Key: k.priv, KeyID: k.kid}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// claims returns a valid SSF SET's claims, carrying both placements so it
// passes every subject mode.
func claims(now time.Time, jti string) map[string]any {
	return map[string]any{
		"iss":    testIssuer,
		"aud":    testAudience,
		"iat":    now.Unix(),
		"jti":    jti,
		"txn":    "txn-" + jti,
		"sub_id": map[string]any{"format": "email", "email": "alice@example.com"},
		"events": map[string]any{eventType: map[string]any{
			"subject":         map[string]any{"format": "iss_sub", "iss": testIssuer, "sub": "7375626A656374"},
			"event_timestamp": now.Unix(),
		}},
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// harness is a Receiver behind a real HTTP server.
type harness struct {
	t     testing.TB
	r     *Receiver
	srv   *httptest.Server
	clock *clock
	key   testKey
}

// newHarness builds a receiver with an RS256 key in memory; mod adjusts
// the config first.
func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	return newLoggedHarness(t, mod, nil)
}

// newLoggedHarness is newHarness with a logger.
func newLoggedHarness(t testing.TB, mod func(*Config), log *zap.Logger) *harness {
	t.Helper()
	h := &harness{t: t, clock: newClock(), key: newKey(t, jose.RS256, "k1")}
	cfg := Config{
		ClientID: testClient, ClientSecret: testSecret,
		Issuer: testIssuer, Audience: testAudience,
		Keys: jwks(h.key), Now: h.clock.Now, Quiet: true,
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	h.srv = httptest.NewServer(r.Handler())
	t.Cleanup(h.srv.Close)
	return h
}

// token fetches an access token with Basic client authentication.
func (h *harness) token() string {
	h.t.Helper()
	resp, body := h.tokenRequest(url.Values{"grant_type": {"client_credentials"}}, true, testClient, testSecret)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		h.t.Fatal(err)
	}
	return tr.AccessToken
}

func (h *harness) tokenRequest(form url.Values, basic bool, id, secret string) (*http.Response, []byte) {
	h.t.Helper()
	if !basic && id != "" {
		form.Set("client_id", id)
		form.Set("client_secret", secret)
	}
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return do(h.t, req)
}

// push sends a SET as a well-behaved transmitter would; mod may change the
// request before it is sent.
func (h *harness) push(tok, jws string, mod func(*http.Request)) (*http.Response, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/events", strings.NewReader(jws))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if mod != nil {
		mod(req)
	}
	return do(h.t, req)
}

// set signs claims with the harness key.
func (h *harness) set(c map[string]any) string {
	h.t.Helper()
	return sign(h.t, h.key, "secevent+jwt", mustJSON(h.t, c))
}

func do(t testing.TB, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// rfc8935Error decodes an RFC 8935 error body, failing on anything else.
func rfc8935Error(t testing.TB, resp *http.Response, body []byte) errorBody {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, body %s", ct, body)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Err == "" || e.Description == "" {
		t.Fatalf("error body lacks err or description: %s", body)
	}
	return e
}

func mustRequest(t testing.TB, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
