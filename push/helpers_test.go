package push

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/secret"
)

const (
	testClientID = "relay-client"
	// testSecret and testTokenMarker are distinctive so the leak scan can
	// search for them anywhere.
	testSecret      = "cl1ent-S3CRET-7f9a2b"
	testTokenMarker = "ACCESS-TOKEN-c41d"
	testJWS         = "eyJhbGciOiJSUzI1NiIsInR5cCI6InNlY2V2ZW50K2p3dCJ9.eyJpc3MiOiJodHRwczovL2lkcC5leGFtcGxlIn0.c2lnbmF0dXJl"
)

// tokenValue is the n-th access token the test token endpoint issues.
func tokenValue(n int64) string { return fmt.Sprintf("%s-%d", testTokenMarker, n) }

// tokenServer is a real OAuth token endpoint. By default it checks the client
// credentials (HTTP Basic) and issues tokenValue(n) for the n-th request.
type tokenServer struct {
	*httptest.Server
	requests  atomic.Int64
	expiresIn atomic.Int64
	delay     time.Duration
	// respond, when set, replaces the default answer.
	respond func(w http.ResponseWriter, r *http.Request, n int64)

	mu   sync.Mutex
	last *http.Request
	form map[string][]string
}

func newTokenServer(t testing.TB, useTLS bool) *tokenServer {
	t.Helper()
	ts := &tokenServer{}
	ts.expiresIn.Store(3600)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ts.requests.Add(1)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		ts.mu.Lock()
		ts.last = r.Clone(r.Context())
		ts.form = r.PostForm
		ts.mu.Unlock()
		if ts.delay > 0 {
			time.Sleep(ts.delay)
		}
		if ts.respond != nil {
			ts.respond(w, r, n)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if id != testClientID || secret != testSecret || r.PostForm.Get("grant_type") != "client_credentials" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": tokenValue(n),
			"token_type":   "Bearer",
			"expires_in":   ts.expiresIn.Load(),
		})
	})
	ts.Server = startServer(h, useTLS)
	t.Cleanup(ts.Close)
	return ts
}

// receiver is a real RFC 8935 endpoint whose answer the test chooses.
type receiver struct {
	*httptest.Server
	hits    atomic.Int64
	respond func(w http.ResponseWriter, r *http.Request, body []byte, n int64)

	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	method, path string
	header       http.Header
	body         []byte
}

func newReceiver(t testing.TB, useTLS bool, respond func(w http.ResponseWriter, r *http.Request, body []byte, n int64)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rc.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.requests = append(rc.requests, recorded{r.Method, r.URL.Path, r.Header.Clone(), body})
		rc.mu.Unlock()
		if rc.respond == nil {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		rc.respond(w, r, body, n)
	})
	rc.Server = startServer(h, useTLS)
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) recorded() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.requests...)
}

// acceptTokens answers 202 to the given Authorization values and 401
// otherwise.
func acceptTokens(tokens ...string) func(w http.ResponseWriter, r *http.Request, body []byte, n int64) {
	ok := map[string]bool{}
	for _, tk := range tokens {
		ok["Bearer "+tk] = true
	}
	return func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		if !ok[r.Header.Get("Authorization")] {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}
}

// testPool returns the CA pool trusting httptest's TLS servers (they all
// share one built-in certificate).
func testPool(t *testing.T, s *httptest.Server) *x509.CertPool {
	t.Helper()
	return s.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}

// oauthConfig is a receiver config using the token server.
func oauthConfig(rc *receiver, ts *tokenServer) Config {
	cfg := Config{
		Name:     "test-rcv",
		Endpoint: rc.URL + "/events",
		Auth: AuthConfig{
			TokenURL:     ts.URL + "/oauth2/token",
			ClientID:     testClientID,
			ClientSecret: secret.Value(testSecret),
			Scopes:       []string{"messages/write"},
		},
		// Generous: 100 concurrent TLS handshakes under -race on a loaded
		// two-core machine take seconds. Tests of timeouts set their own.
		Timeout:        30 * time.Second,
		ConnectTimeout: 30 * time.Second,
	}
	if rc.TLS != nil {
		cfg.TLS.RootCAs = rc.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	} else {
		cfg.InsecureHTTP = true
	}
	return cfg
}

// newTestClient builds a client whose logs are captured at debug level.
func newTestClient(t *testing.T, cfg Config) (*Client, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	c, err := New(cfg, zap.New(core), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, logs
}

// startServer starts an httptest server whose error log is discarded: tests
// end with TLS dials still in flight, which the server would report as
// handshake errors.
func startServer(h http.Handler, useTLS bool) *httptest.Server {
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = discardLog
	if useTLS {
		s.StartTLS()
	} else {
		s.Start()
	}
	return s
}

// discardLog silences httptest servers' error logs.
var discardLog = log.New(io.Discard, "", 0)
