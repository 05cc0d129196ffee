package badinput

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

const (
	// Small timings so every retrying case ends in the dead-letter stream
	// within a couple of seconds.
	pushTimeout   = 300 * time.Millisecond
	maxRetryAfter = 100 * time.Millisecond
	maxAttempts   = 3
	hugeBody      = 8 << 20
)

// misbehaving is one receiver that misbehaves, and the outcome the relay
// must reach with it.
type misbehaving struct {
	name    string
	handler func(c *counter) http.HandlerFunc
	tls     bool // serve HTTPS with httptest's certificate
	trustCA bool // configure that certificate as the receiver's CA
	oauth   bool // the receiver has a /token endpoint and wants a bearer token

	// Expected outcome: delivered, blocked (a configuration failure: the
	// intent is kept, no dead letter, the consumer paused), or a dead
	// letter with these fields.
	delivered  bool
	blocked    bool
	reason     string
	lastReason string // the last push reason, when reason is the worker's own
	status     int
	attempts   int
	body       string // substring of the body excerpt
	desc       string // substring of the description
	requests   int    // exact requests to /events; -1 = do not check
	tokens     int    // exact requests to /token when oauth
	within     time.Duration
}

// dribble writes one byte every 50ms until the client goes away.
func dribble(w http.ResponseWriter, r *http.Request) {
	f := w.(http.Flusher)
	f.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := w.Write([]byte("x")); err != nil {
			return
		}
		f.Flush()
	}
}

// huge writes an 8 MiB body after status and records the most of it that
// one request got out before the client hung up. Loopback socket buffers
// absorb a few MiB, so what the client read is not measured exactly; that it
// hung up before the end is.
func huge(status int, written *atomic.Int64) func(c *counter) http.HandlerFunc {
	return func(c *counter) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			c.inc(r.URL.Path)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			chunk := []byte(strings.Repeat("A", 32<<10))
			var n int64
			defer func() { maxInt(written, n) }()
			for n < hugeBody {
				k, err := w.Write(chunk)
				n += int64(k)
				if err != nil {
					return
				}
			}
		}
	}
}

func misbehavingCases(written500, written200 *atomic.Int64) []misbehaving {
	simple := func(status int, ctype, body string, hdr ...string) func(c *counter) http.HandlerFunc {
		return func(c *counter) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c.inc(r.URL.Path)
				for i := 0; i+1 < len(hdr); i += 2 {
					w.Header().Set(hdr[i], hdr[i+1])
				}
				w.Header().Set("Content-Type", ctype)
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
			}
		}
	}
	return []misbehaving{
		{name: "non-json-400", handler: simple(400, "text/html", "<html><body><h1>400 Bad Request</h1>nginx</body></html>"),
			reason: push.ReasonHTTP4xx, status: 400, attempts: 1, body: "<h1>400 Bad Request</h1>", requests: 1, within: 2 * time.Second},
		{name: "json-array-400", handler: simple(400, "application/json", `[{"err":"invalid_request","description":"in an array"}]`),
			reason: push.ReasonHTTP4xx, status: 400, attempts: 1, body: `[{"err":"invalid_request"`, requests: 1, within: 2 * time.Second},
		{name: "huge-500", handler: huge(500, written500),
			reason: worker.ReasonAttemptsExhausted, lastReason: push.ReasonHTTP5xx, status: 500, attempts: maxAttempts, body: "AAAA", requests: maxAttempts, within: 4 * time.Second},
		{name: "huge-200", handler: huge(200, written200), delivered: true, requests: 1, within: 2 * time.Second},
		{name: "redirect-loop", handler: func(c *counter) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c.inc(r.URL.Path)
				http.Redirect(w, r, r.URL.Path, http.StatusFound)
			}
		}, blocked: true, reason: push.ReasonRedirect, requests: 1, within: 2 * time.Second},
		{name: "single-302", handler: simple(302, "text/plain", "moved", "Location", "https://elsewhere.example.net/ssf/events"),
			blocked: true, reason: push.ReasonRedirect, requests: 1, within: 2 * time.Second},
		{name: "slowloris-body-503", handler: func(c *counter) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c.inc(r.URL.Path)
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(503)
				dribble(w, r)
			}
		}, reason: worker.ReasonAttemptsExhausted, lastReason: push.ReasonHTTP5xx, status: 503, attempts: maxAttempts, requests: maxAttempts, within: 4 * time.Second},
		{name: "slowloris-body-202", handler: func(c *counter) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c.inc(r.URL.Path)
				w.WriteHeader(202)
				dribble(w, r)
			}
		}, delivered: true, requests: 1, within: 2 * time.Second},
		{name: "slowloris-headers", handler: func(c *counter) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				c.inc(r.URL.Path)
				conn, buf, err := w.(http.Hijacker).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(buf, "X-Dribble-%d: x\r\n", i); err != nil {
						return
					}
					if err := buf.Flush(); err != nil {
						return
					}
					_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					if _, err := bufio.NewReader(conn).Peek(1); err != nil && !isTimeout(err) {
						return // the client hung up
					}
				}
			}
		}, reason: worker.ReasonAttemptsExhausted, lastReason: push.ReasonTimeout, status: 0, attempts: maxAttempts, desc: "deadline exceeded", requests: maxAttempts, within: 4 * time.Second},
		{name: "tls-untrusted", tls: true, handler: simple(202, "text/plain", ""),
			blocked: true, reason: push.ReasonTLS, requests: 0, within: 2 * time.Second},
		{name: "tls-trusted-ca", tls: true, trustCA: true, handler: simple(202, "text/plain", ""),
			delivered: true, requests: 1, within: 2 * time.Second},
		{name: "unauthorized-forever", oauth: true, handler: simple(401, "application/json", `{"err":"authentication_failed","description":"token not recognised"}`,
			"WWW-Authenticate", `Bearer error="invalid_token"`),
			// Refused again with a fresh token: the credentials are wrong.
			blocked: true, reason: push.ReasonAuthenticationFailed, requests: 2, tokens: 2, within: 2 * time.Second},
		{name: "retry-after-a-day", handler: simple(429, "text/plain", "slow down", "Retry-After", "86400"),
			reason: worker.ReasonAttemptsExhausted, lastReason: push.ReasonHTTP429, status: 429, attempts: maxAttempts, body: "slow down", requests: maxAttempts, within: 4 * time.Second},
	}
}

// maxInt raises m to v.
func maxInt(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

// counter counts requests to one misbehaving server.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) inc(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[path]++
}

func (c *counter) get(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}

func isTimeout(err error) bool {
	te, ok := err.(interface{ Timeout() bool })
	return ok && te.Timeout()
}

func TestMisbehavingReceivers(t *testing.T) {
	var written500, written200 atomic.Int64
	cases := misbehavingCases(&written500, &written200)
	_, keyFile := newKey(t)
	counters := map[string]*counter{}
	var receivers []config.Receiver
	for _, c := range cases {
		cnt := &counter{}
		counters[c.name] = cnt
		mux := http.NewServeMux()
		mux.Handle("/events", c.handler(cnt))
		mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
			cnt.inc(r.URL.Path)
			w.Header().Set("Content-Type", "application/json")
			n := cnt.get("/token")
			fmt.Fprintf(w, `{"access_token":"tok-%d-abcdefgh","token_type":"Bearer","expires_in":3600}`, n)
		})
		srv := httptest.NewUnstartedServer(mux)
		// The untrusted case makes the server log failed handshakes: expected.
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		// A small, fixed send buffer (no autotuning to MiBs) so that how
		// much of an 8 MiB body gets out shows whether the client stopped
		// reading, not how big the kernel's buffers are.
		srv.Config.ConnState = func(conn net.Conn, s http.ConnState) {
			if tc, ok := conn.(*net.TCPConn); ok && s == http.StateNew {
				_ = tc.SetWriteBuffer(64 << 10)
			}
		}
		if c.tls {
			srv.StartTLS()
		} else {
			srv.Start()
		}
		t.Cleanup(srv.Close)
		rc := config.Receiver{
			Name: c.name, Endpoint: srv.URL + "/events", Audience: config.Audience{audience},
			Key: keyID, Subject: config.PlacementSubID, InsecureHTTP: !c.tls,
			Timeout: pushTimeout, ConnectTimeout: pushTimeout, MaxRetryAfter: maxRetryAfter,
			Retry: config.Retry{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, MaxAttempts: maxAttempts, MaxAge: time.Hour},
			Pause: config.Pause{Threshold: -1},
		}
		if c.oauth {
			rc.Auth = config.Auth{TokenURL: srv.URL + "/token", ClientID: clientID, ClientSecret: config.Secret(clientSecret)}
		}
		if c.trustCA {
			ca := filepath.Join(t.TempDir(), "ca.pem")
			der := srv.Certificate().Raw
			if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
				t.Fatal(err)
			}
			rc.TLS.CA = ca
		}
		receivers = append(receivers, rc)
	}
	e := startRelay(t, keyFile, receivers)

	// One intent, addressed to no receiver in particular, goes to all of
	// them at once: each case runs in parallel on its own consumer.
	published := time.Now()
	in := &intent.Intent{ID: "misbehaving-1", Type: "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice@example.com"}}
	if _, err := e.pub.Publish(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	// Settled by every consumer but the blocked ones, which keep it.
	unsettled := func() []string {
		var pending []string
		for _, c := range cases {
			if c.blocked {
				continue
			}
			info, err := e.js.Consumer(context.Background(), queue.IntentStream, queue.ConsumerName(c.name))
			if err != nil {
				t.Fatal(err)
			}
			if st, err := info.Info(context.Background()); err != nil || st.NumPending+uint64(st.NumAckPending) > 0 {
				pending = append(pending, c.name)
			}
		}
		return pending
	}
	waitFor(t, 15*time.Second, func() string {
		return fmt.Sprintf("intent still held by the consumers of %v", unsettled())
	}, func() bool { return len(unsettled()) == 0 })
	done := time.Since(published)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dls := e.deadLetters(c.name)
			cnt := counters[c.name]
			if c.requests >= 0 {
				if got := cnt.get("/events"); got != c.requests {
					t.Errorf("%d requests to /events, want %d", got, c.requests)
				}
			}
			if c.oauth {
				if got := cnt.get("/token"); got != c.tokens {
					t.Errorf("%d token requests, want %d (one, then one refresh per refused attempt)", got, c.tokens)
				}
			}
			if c.delivered {
				if len(dls) != 0 {
					t.Errorf("want delivered, got dead letter %+v", dls[0].DeadLetter)
				}
				return
			}
			if c.blocked {
				if len(dls) != 0 {
					t.Fatalf("want blocked, got dead letter %+v", dls[0].DeadLetter)
				}
				cons, err := e.js.Consumer(context.Background(), queue.IntentStream, queue.ConsumerName(c.name))
				if err != nil {
					t.Fatal(err)
				}
				st, err := worker.SharedState(context.Background(), e.js, c.name)
				if err != nil || st.State != "blocked" || st.Reason != c.reason {
					t.Errorf("shared state %+v (%v), want blocked for %s", st, err, c.reason)
				}
				if info, err := cons.Info(context.Background()); err != nil || !info.Paused || info.NumPending+uint64(info.NumAckPending) == 0 {
					t.Errorf("consumer %+v (%v): want paused, the intent kept", info, err)
				}
				return
			}
			if len(dls) != 1 {
				t.Fatalf("%d dead letters, want 1", len(dls))
			}
			dl := dls[0]
			t.Logf("reason=%s status=%d attempts=%d err=%q description=%q body=%.80q after %v",
				dl.Reason, dl.Status, dl.Attempts, dl.Err, dl.Description, dl.Body, dl.Stored.Sub(published))
			if dl.Reason != c.reason {
				t.Errorf("reason %q, want %q", dl.Reason, c.reason)
			}
			if dl.LastReason != c.lastReason {
				t.Errorf("last reason %q, want %q", dl.LastReason, c.lastReason)
			}
			if dl.Status != c.status {
				t.Errorf("status %d, want %d", dl.Status, c.status)
			}
			if dl.Attempts != c.attempts {
				t.Errorf("attempts %d, want %d", dl.Attempts, c.attempts)
			}
			if !strings.Contains(dl.Body, c.body) {
				t.Errorf("body %q does not contain %q", dl.Body, c.body)
			}
			if !strings.Contains(dl.Description, c.desc) {
				t.Errorf("description %q does not contain %q", dl.Description, c.desc)
			}
			if len(dl.Body) > 2*push.MaxBodyExcerpt {
				t.Errorf("body excerpt is %d bytes, want it bounded near push.MaxBodyExcerpt (%d)", len(dl.Body), push.MaxBodyExcerpt)
			}
			if lat := dl.Stored.Sub(published); lat > c.within {
				t.Errorf("dead-lettered %v after publish, want under %v", lat, c.within)
			}
			if string(dl.Intent) == "" || dl.IntentID != in.ID {
				t.Errorf("dead letter intent %q (%d bytes), want %q kept for replay", dl.IntentID, len(dl.Intent), in.ID)
			}
		})
	}
	for name, w := range map[string]*atomic.Int64{"huge-500": &written500, "huge-200": &written200} {
		// The client reads push.MaxBodyRead; with 64 KiB of send buffer
		// and the client's receive window, a few hundred KiB get out.
		if w.Load() >= 2<<20 {
			t.Errorf("%s: one request wrote %d bytes before the client hung up: it read far past its cap of %d", name, w.Load(), push.MaxBodyRead)
		}
		t.Logf("%s: at most %d of %d bytes got out in one request before the client hung up", name, w.Load(), hugeBody)
	}
	t.Logf("all %d cases settled %v after publish", len(cases), done)
}
