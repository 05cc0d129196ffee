package push

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPushSendsExactRequest(t *testing.T) {
	for _, style := range []string{AuthStyleBasic, AuthStyleForm} {
		t.Run(style, func(t *testing.T) {
			ts := newTokenServer(t, true)
			rc := newReceiver(t, true, nil)
			cfg := oauthConfig(rc, ts)
			if style == AuthStyleForm {
				cfg.Auth.AuthStyle = AuthStyleForm
			}
			c, _ := newTestClient(t, cfg)

			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != Delivered || r.Status != http.StatusAccepted || r.Attempts != 1 || r.Receiver != "test-rcv" {
				t.Fatalf("result %+v", r)
			}
			reqs := rc.recorded()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			got := reqs[0]
			if got.method != http.MethodPost || got.path != "/events" || string(got.body) != testJWS {
				t.Fatalf("request %s %s body %q", got.method, got.path, got.body)
			}
			want := map[string]string{
				"Content-Type":   "application/secevent+jwt",
				"Accept":         "application/json",
				"Authorization":  "Bearer " + tokenValue(1),
				"User-Agent":     "setrelay/" + Version,
				"Content-Length": strconv.Itoa(len(testJWS)),
			}
			for k, v := range want {
				if vs := got.header.Values(k); len(vs) != 1 || vs[0] != v {
					t.Errorf("header %s = %q, want %q", k, vs, v)
				}
			}
			for k := range got.header {
				if _, ok := want[k]; !ok && k != "Accept-Encoding" {
					t.Errorf("unexpected header %s: %q", k, got.header[k])
				}
			}

			// The token request: client credentials with the chosen auth style.
			ts.mu.Lock()
			tr, form := ts.last, ts.form
			ts.mu.Unlock()
			if form["grant_type"][0] != "client_credentials" || form["scope"][0] != "messages/write" {
				t.Errorf("token form %v", form)
			}
			id, secret, basic := tr.BasicAuth()
			switch style {
			case AuthStyleBasic:
				if !basic || id != testClientID || secret != testSecret || form["client_secret"] != nil {
					t.Errorf("basic auth: %v %q, form %v", basic, id, form)
				}
			case AuthStyleForm:
				if basic || form["client_id"][0] != testClientID || form["client_secret"][0] != testSecret {
					t.Errorf("form auth: basic=%v form=%v", basic, form)
				}
			}
		})
	}
}

func TestPushAcceptsAny2xxWithoutParsingBody(t *testing.T) {
	for _, status := range []int{200, 201, 202, 204} {
		rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "{not json at all")
		})
		c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
		if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered || r.Status != status {
			t.Errorf("status %d: %+v", status, r)
		}
	}
}

func TestConcurrentPushesFetchOneToken(t *testing.T) {
	ts := newTokenServer(t, true)
	ts.delay = 50 * time.Millisecond // keep the fetch in flight while the others arrive
	rc := newReceiver(t, true, acceptTokens(tokenValue(1)))
	cfg := oauthConfig(rc, ts)
	cfg.MaxConns = 100
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()

	var wg sync.WaitGroup
	var delivered atomic.Int64
	start := make(chan struct{})
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome == Delivered {
				delivered.Add(1)
			} else {
				t.Errorf("push: %v", r.Error())
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests for 100 concurrent pushes, want 1", n)
	}
	if delivered.Load() != 100 || rc.hits.Load() != 100 {
		t.Fatalf("delivered %d, receiver hits %d", delivered.Load(), rc.hits.Load())
	}
	if v := testutil.ToFloat64(m.tokenFetches.WithLabelValues("test-rcv", "ok")); v != 1 {
		t.Fatalf("token fetch metric %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.pushResults.WithLabelValues("test-rcv", "delivered", "delivered")); v != 100 {
		t.Fatalf("delivered metric %v, want 100", v)
	}
}

func TestRefusedTokenIsRefreshedOnceAndRetriedOnce(t *testing.T) {
	refusals := map[string]func(w http.ResponseWriter){
		"401": func(w http.ResponseWriter) { w.WriteHeader(http.StatusUnauthorized) },
		"400 authentication_failed": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"err":"authentication_failed","description":"token revoked"}`)
		},
	}
	for name, refuse := range refusals {
		t.Run(name, func(t *testing.T) {
			ts := newTokenServer(t, false)
			rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
				if r.Header.Get("Authorization") != "Bearer "+tokenValue(2) {
					refuse(w)
					return
				}
				w.WriteHeader(http.StatusAccepted)
			})
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != Delivered || r.Attempts != 2 {
				t.Fatalf("result %+v", r)
			}
			if ts.requests.Load() != 2 || rc.hits.Load() != 2 {
				t.Fatalf("token requests %d, receiver hits %d; want 2, 2", ts.requests.Load(), rc.hits.Load())
			}
			// The new token is now the shared one: no further fetch.
			if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered || r.Attempts != 1 || ts.requests.Load() != 2 {
				t.Fatalf("next push %+v, token requests %d", r, ts.requests.Load())
			}
		})
	}
}

// A token refused again right after a fresh fetch means the credentials are
// wrong for every SET: Blocked, not a retry that loops until max_age.
func TestSecondRefusalBlocksAndDoesNotLoop(t *testing.T) {
	ts := newTokenServer(t, false)
	rc := newReceiver(t, false, acceptTokens()) // refuses every token
	c, _ := newTestClient(t, oauthConfig(rc, ts))
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Blocked || r.Reason != ReasonAuthenticationFailed || r.Status != 401 || r.Attempts != 2 {
		t.Fatalf("result %+v", r)
	}
	if ts.requests.Load() != 2 || rc.hits.Load() != 2 {
		t.Fatalf("token requests %d, receiver hits %d; want exactly 2 and 2", ts.requests.Load(), rc.hits.Load())
	}
	var de *DeliveryError
	if err := r.Error(); !errors.As(err, &de) || !de.Temporary() {
		t.Fatalf("error %v should be temporary", err)
	}
}

func TestStaticHeaderRefusalBlocksWithoutSecondAttempt(t *testing.T) {
	rc := newReceiver(t, false, acceptTokens("right"))
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true,
		Auth: AuthConfig{AuthorizationHeader: "Bearer wrong"}})
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Blocked || r.Attempts != 1 || rc.hits.Load() != 1 {
		t.Fatalf("result %+v, hits %d", r, rc.hits.Load())
	}
	c2, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true,
		Auth: AuthConfig{AuthorizationHeader: "Bearer right"}})
	if r := c2.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("static header not sent: %+v", r)
	}
}

func TestNoAuthSendsNoAuthorization(t *testing.T) {
	rc := newReceiver(t, false, nil)
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("%+v", r)
	}
	if h := rc.recorded()[0].header; h.Get("Authorization") != "" {
		t.Fatalf("Authorization sent without auth: %q", h.Get("Authorization"))
	}
}

func TestAccessDeniedDropsTokenAndRetriesLater(t *testing.T) {
	ts := newTokenServer(t, false)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		if r.Header.Get("Authorization") == "Bearer "+tokenValue(1) {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"err":"access_denied","description":"stream paused"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	c, _ := newTestClient(t, oauthConfig(rc, ts))
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Retry || r.Reason != ReasonAccessDenied || r.Attempts != 1 || r.RetryAfter != 30*time.Second || r.Description != "stream paused" {
		t.Fatalf("result %+v", r)
	}
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered || ts.requests.Load() != 2 {
		t.Fatalf("after access_denied: %+v, token requests %d", r, ts.requests.Load())
	}
}

func TestExpiringTokenIsRefreshedBeforeUse(t *testing.T) {
	ts := newTokenServer(t, false)
	// A 2 s token with a 60 s margin: the margin shrinks to a quarter of
	// the lifetime, so the token is used for 1.5 s and then replaced.
	ts.expiresIn.Store(2)
	var used []string
	var mu sync.Mutex
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		mu.Lock()
		used = append(used, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := oauthConfig(rc, ts)
	cfg.Auth.RefreshBefore = 60 * time.Second
	c, _ := newTestClient(t, cfg)
	for range 2 {
		if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
			t.Fatal(r.Error())
		}
	}
	if ts.requests.Load() != 1 {
		t.Fatalf("token requests %d before expiry, want 1", ts.requests.Load())
	}
	time.Sleep(1600 * time.Millisecond)
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatal(r.Error())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"Bearer " + tokenValue(1), "Bearer " + tokenValue(1), "Bearer " + tokenValue(2)}
	if ts.requests.Load() != 2 || strings.Join(used, ",") != strings.Join(want, ",") {
		t.Fatalf("token requests %d, tokens used %v; want 2, %v", ts.requests.Load(), used, want)
	}
}

// A token whose lifetime is shorter than the refresh margin must still be
// reused: treating it as expired on arrival would fetch a token per push.
func TestShortLivedTokenIsReused(t *testing.T) {
	ts := newTokenServer(t, false)
	ts.expiresIn.Store(15)
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) {
		w.WriteHeader(http.StatusAccepted)
	})
	cfg := oauthConfig(rc, ts)
	cfg.Auth.RefreshBefore = time.Minute
	c, _ := newTestClient(t, cfg)
	for range 50 {
		if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
			t.Fatal(r.Error())
		}
	}
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("50 pushes with a 15 s token made %d token requests, want 1", n)
	}
}

func TestHangingReceiverIsCutAtTimeout(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true, Timeout: 300 * time.Millisecond})

	start := time.Now()
	r := c.Push(context.Background(), []byte(testJWS))
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("push took %v with a 300ms timeout", el)
	}
	if r.Outcome != Retry || r.Reason != ReasonTimeout || !errors.Is(r.Error(), context.DeadlineExceeded) {
		t.Fatalf("result %+v", r)
	}

	// The caller's context is honoured too, well before the client timeout.
	c2, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start = time.Now()
	r = c2.Push(ctx, []byte(testJWS))
	if el := time.Since(start); el > 3*time.Second || r.Reason != ReasonCanceled || r.Outcome != Retry {
		t.Fatalf("cancelled push: %+v after %v", r, el)
	}
}

func TestHangingTokenEndpointIsCut(t *testing.T) {
	ts := newTokenServer(t, false)
	release := make(chan struct{})
	ts.respond = func(w http.ResponseWriter, r *http.Request, _ int64) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	defer close(release)
	rc := newReceiver(t, false, nil)
	cfg := oauthConfig(rc, ts)
	cfg.Timeout = 300 * time.Millisecond
	c, _ := newTestClient(t, cfg)
	start := time.Now()
	r := c.Push(context.Background(), []byte(testJWS))
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("push took %v", el)
	}
	if r.Outcome != Retry || r.Reason != ReasonToken || r.Attempts != 0 || rc.hits.Load() != 0 {
		t.Fatalf("result %+v", r)
	}
}

// countingTransport counts the response body bytes the client reads.
type countingTransport struct {
	next http.RoundTripper
	read atomic.Int64
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := ct.next.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &ct.read}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func TestLargeBodyIsNotReadPastTheCap(t *testing.T) {
	const size = 8 << 20
	for _, status := range []int{http.StatusBadRequest, http.StatusAccepted, http.StatusServiceUnavailable} {
		var written atomic.Int64
		rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) {
			w.WriteHeader(status)
			chunk := []byte(strings.Repeat("A", 32<<10))
			for written.Load() < size {
				n, err := w.Write(chunk)
				written.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
		ct := &countingTransport{next: c.hc.Transport}
		c.hc.Transport = ct

		r := c.Push(context.Background(), []byte(testJWS))
		if r.Status != status {
			t.Fatalf("status %d: result %+v", status, r)
		}
		if got := ct.read.Load(); got > MaxBodyRead {
			t.Fatalf("status %d: client read %d body bytes, cap is %d", status, got, MaxBodyRead)
		}
		if len(r.Body) > MaxBodyExcerpt+64 {
			t.Fatalf("status %d: excerpt of %d bytes", status, len(r.Body))
		}
	}
}

func TestRedirectIsNotFollowed(t *testing.T) {
	target := newReceiver(t, false, nil)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		http.Redirect(w, r, target.URL+"/moved", http.StatusTemporaryRedirect)
	})
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Blocked || r.Reason != ReasonRedirect || r.Status != 307 || r.Location != target.URL+"/moved" {
		t.Fatalf("result %+v", r)
	}
	if !strings.Contains(r.Error().Error(), target.URL+"/moved") {
		t.Fatalf("error does not name the Location: %v", r.Error())
	}
	if target.hits.Load() != 0 {
		t.Fatal("redirect was followed")
	}
}

func TestConfigValidation(t *testing.T) {
	base := Config{Name: "r", Endpoint: "https://rcv.example/events"}
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"https ok", func(*Config) {}, true},
		{"http refused", func(c *Config) { c.Endpoint = "http://rcv.example/events" }, false},
		{"http with opt-in", func(c *Config) { c.Endpoint = "http://localhost:8080/events"; c.InsecureHTTP = true }, true},
		{"ftp refused", func(c *Config) { c.Endpoint = "ftp://rcv.example/" }, false},
		{"relative refused", func(c *Config) { c.Endpoint = "/events" }, false},
		{"userinfo refused", func(c *Config) { c.Endpoint = "https://u:p@rcv.example/" }, false},
		{"no name", func(c *Config) { c.Name = "" }, false},
		{"http token url refused", func(c *Config) {
			c.Auth = AuthConfig{TokenURL: "http://idp.example/token", ClientID: "a", ClientSecret: "b"}
		}, false},
		{"oauth ok", func(c *Config) {
			c.Auth = AuthConfig{TokenURL: "https://idp.example/token", ClientID: "a", ClientSecret: "b", AuthStyle: "form"}
		}, true},
		{"oauth no secret", func(c *Config) { c.Auth = AuthConfig{TokenURL: "https://idp.example/token", ClientID: "a"} }, false},
		{"bad auth style", func(c *Config) {
			c.Auth = AuthConfig{TokenURL: "https://idp.example/token", ClientID: "a", ClientSecret: "b", AuthStyle: "jwt"}
		}, false},
		{"token and header", func(c *Config) {
			c.Auth = AuthConfig{TokenURL: "https://idp.example/token", ClientID: "a", ClientSecret: "b", AuthorizationHeader: "x"}
		}, false},
		{"creds without token url", func(c *Config) { c.Auth = AuthConfig{ClientID: "a", ClientSecret: "b"} }, false},
		{"header with newline", func(c *Config) { c.Auth = AuthConfig{AuthorizationHeader: "Bearer x\r\nX-Evil: 1"} }, false},
		{"cert without key", func(c *Config) { c.TLS.CertFile = "c.pem" }, false},
		{"missing ca file", func(c *Config) { c.TLS.CAFile = "/nonexistent/ca.pem" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mutate(&cfg)
			c, err := New(cfg, nil, nil)
			if tt.ok != (err == nil) {
				t.Fatalf("New: %v", err)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v is not ErrConfig", err)
			}
			if c != nil {
				c.CloseIdleConnections()
			}
		})
	}
}

func TestTokenEndpointFailuresAreClassified(t *testing.T) {
	jsonErr := func(status int, body string) func(w http.ResponseWriter, r *http.Request, n int64) {
		return func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}
	}
	tests := []struct {
		name    string
		respond func(w http.ResponseWriter, r *http.Request, n int64)
		down    bool
		outcome Outcome
		reason  string
		status  int
	}{
		{"down", nil, true, Retry, ReasonToken, 0},
		{"500", jsonErr(500, `oops`), false, Retry, ReasonToken, 500},
		{"503 json", jsonErr(503, `{"error":"temporarily_unavailable"}`), false, Retry, ReasonToken, 503},
		{"429", jsonErr(429, `slow down`), false, Retry, ReasonToken, 429},
		// Everything below is a configuration failure: the receiver is
		// blocked, not its SETs dead-lettered or retried until max_age.
		{"bad json", jsonErr(200, `{"access_token":`), false, Blocked, ReasonTokenConfig, 0},
		{"no access_token", jsonErr(200, `{"token_type":"Bearer"}`), false, Blocked, ReasonTokenConfig, 0},
		{"array", jsonErr(200, `["x"]`), false, Blocked, ReasonTokenConfig, 0},
		{"invalid_client", jsonErr(400, `{"error":"invalid_client"}`), false, Blocked, ReasonTokenConfig, 400},
		{"unauthorized_client", jsonErr(400, `{"error":"unauthorized_client"}`), false, Blocked, ReasonTokenConfig, 400},
		{"invalid_grant", jsonErr(400, `{"error":"invalid_grant"}`), false, Blocked, ReasonTokenConfig, 400},
		{"invalid_scope", jsonErr(400, `{"error":"invalid_scope"}`), false, Blocked, ReasonTokenConfig, 400},
		{"unsupported_grant_type", jsonErr(400, `{"error":"unsupported_grant_type"}`), false, Blocked, ReasonTokenConfig, 400},
		{"invalid_request", jsonErr(400, `{"error":"invalid_request"}`), false, Blocked, ReasonTokenConfig, 400},
		{"invalid_client 200", jsonErr(200, `{"error":"invalid_client"}`), false, Blocked, ReasonTokenConfig, 200},
		{"401 no body", jsonErr(401, ``), false, Blocked, ReasonTokenConfig, 401},
		{"404", jsonErr(404, `<html>not found</html>`), false, Blocked, ReasonTokenConfig, 404},
		{"403 html", jsonErr(403, `<html>forbidden</html>`), false, Blocked, ReasonTokenConfig, 403},
		{"redirect", func(w http.ResponseWriter, r *http.Request, _ int64) {
			http.Redirect(w, r, "https://elsewhere.example/token", http.StatusFound)
		}, false, Blocked, ReasonTokenConfig, 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = tt.respond
			if tt.down {
				ts.Close()
			}
			rc := newReceiver(t, false, nil)
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != tt.outcome || r.Reason != tt.reason || r.Status != tt.status || r.Attempts != 0 {
				t.Fatalf("result %+v (%v)", r, r.Error())
			}
			var te *TokenError
			if !errors.As(r.Error(), &te) || te.Temporary() == (tt.outcome == Blocked) {
				t.Fatalf("error %v: want a *TokenError, temporary=%v", r.Error(), tt.outcome != Blocked)
			}
			if rc.hits.Load() != 0 {
				t.Fatal("pushed without a token")
			}
		})
	}
}

func TestConnectionsAreReused(t *testing.T) {
	var conns atomic.Int64
	rc := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	rc.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	rc.Start()
	defer rc.Close()
	const workers = 8
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true, MaxConns: workers})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
					t.Error(r.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	// A connection goes back to the pool just after its response is read,
	// so a worker can occasionally dial before its previous connection is
	// idle again; with Go's default of 2 idle connections per host the
	// same load opens hundreds.
	if n := conns.Load(); n > 2*workers {
		t.Fatalf("%d connections for %d workers x 100 pushes: connections are churned", n, workers)
	}
	t.Logf("%d connections for %d workers x 100 pushes", conns.Load(), workers)
}

func TestMetricsRegisterTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if m1.tokenFetches != m2.tokenFetches {
		t.Fatal("second NewMetrics did not reuse the registered collectors")
	}
	var nilM *Metrics
	nilM.push("r", nilM.forDelivered("r"), &Result{}, time.Second) // must not panic
	nilM.tokenFetch("r", "ok")
}

func TestFailingTokenEndpointIsAskedOnceByConcurrentPushes(t *testing.T) {
	ts := newTokenServer(t, false)
	ts.delay = 50 * time.Millisecond
	ts.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	rc := newReceiver(t, false, nil)
	c, _ := newTestClient(t, oauthConfig(rc, ts))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Retry || r.Reason != ReasonToken {
				t.Errorf("result %+v", r)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := ts.requests.Load(); n != 1 {
		t.Fatalf("%d token requests from 50 concurrent pushes against a failing endpoint, want 1", n)
	}
}

func TestCancelledPushDoesNotWaitForTheTokenFetch(t *testing.T) {
	ts := newTokenServer(t, false)
	release := make(chan struct{})
	ts.respond = func(w http.ResponseWriter, r *http.Request, _ int64) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}
	defer close(release) // lets the in-flight fetch end before the server closes
	rc := newReceiver(t, false, nil)
	cfg := oauthConfig(rc, ts)
	cfg.Timeout = time.Minute
	c, _ := newTestClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	r := c.Push(ctx, []byte(testJWS))
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("push waited %v for a hanging token endpoint despite its context", el)
	}
	if r.Outcome != Retry || r.Reason != ReasonTimeout || r.Attempts != 0 || rc.hits.Load() != 0 {
		t.Fatalf("result %+v", r)
	}
}

// Every log line names the receiver exactly once: New adds the field to the
// logger, so the token fetcher must not add it again (JSON logs with a
// duplicate key are ambiguous to log processors).
func TestLogsNameTheReceiverOnce(t *testing.T) {
	ts := newTokenServer(t, true)
	rc := newReceiver(t, true, acceptTokens(tokenValue(1)))
	c, logs := newTestClient(t, oauthConfig(rc, ts))
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("push: %v", r.Error())
	}
	if logs.FilterMessage("fetched access token").Len() != 1 {
		t.Fatalf("no 'fetched access token' line in %v", logs.All())
	}
	for _, e := range logs.All() {
		n := 0
		for _, f := range e.Context {
			if f.Key == "receiver" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q has %d receiver fields, want 1: %v", e.Message, n, e.Context)
		}
	}
}
