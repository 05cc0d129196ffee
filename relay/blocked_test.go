package relay

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// oauthReceiver is a token endpoint and an RFC 8935 push endpoint. The
// token endpoint takes client "relay" with the secret in goodSecret, or
// answers with tokenFault while it is set; the push endpoint takes the
// token it issued, records each SET's jti, and answers pushFault (a status)
// once accepted reaches faultAfter, while pushFault is set.
type oauthReceiver struct {
	srv        *httptest.Server
	goodSecret atomic.Value // string
	tokenFault atomic.Value // string: an OAuth error code, "" for none
	pushFault  atomic.Int64 // an HTTP status, 0 for none
	faultAfter atomic.Int64
	tokens     atomic.Int64
	pushes     atomic.Int64

	mu  sync.Mutex
	jti map[string]int
}

func newOAuthReceiver(t *testing.T) *oauthReceiver {
	o := &oauthReceiver{jti: make(map[string]int)}
	o.goodSecret.Store("new-secret")
	o.tokenFault.Store("")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		o.tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		id, secret, ok := r.BasicAuth()
		if !ok {
			_ = r.ParseForm()
			id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		}
		if code := o.tokenFault.Load().(string); code != "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"error":%q}`, code)
			return
		}
		if id != "relay" || secret != o.goodSecret.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"tok-ok","token_type":"Bearer","expires_in":3600}`))
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		o.pushes.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer tok-ok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if st := o.pushFault.Load(); st != 0 && o.accepted() >= int(o.faultAfter.Load()) {
			w.WriteHeader(int(st))
			return
		}
		parts := strings.Split(string(body), ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[min(1, len(parts)-1)])
		var claims struct {
			JTI string `json:"jti"`
		}
		if err != nil || json.Unmarshal(payload, &claims) != nil || claims.JTI == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"err":"invalid_request"}`))
			return
		}
		o.mu.Lock()
		o.jti[claims.JTI]++
		o.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	o.srv = httptest.NewServer(mux)
	t.Cleanup(o.srv.Close)
	return o
}

func (o *oauthReceiver) accepted() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.jti {
		n += c
	}
	return n
}

// TestBlockedReceiverKeepsBacklog is issue 10's must-show: 5,000 intents
// pending and a configuration failure (a rotated client secret, a token
// endpoint answering invalid_grant, a push endpoint that starts answering
// 404). The receiver blocks within 5 s with 0 dead letters and no attempt
// counted; once fixed (the secret file rewritten; the endpoints fixed),
// delivery resumes without a restart and every intent is delivered exactly
// once by jti.
func TestBlockedReceiverKeepsBacklog(t *testing.T) {
	const n = 5000
	cases := []struct {
		name   string
		reason string
		break_ func(o *oauthReceiver, secretFile string)
		fix    func(t *testing.T, o *oauthReceiver, secretFile string)
	}{
		{"rotated secret", "token_config",
			func(o *oauthReceiver, f string) {},
			func(t *testing.T, o *oauthReceiver, f string) {
				if err := os.WriteFile(f, []byte("new-secret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}},
		{"invalid_grant", "token_config",
			func(o *oauthReceiver, f string) {
				_ = os.WriteFile(f, []byte("new-secret\n"), 0o600)
				o.tokenFault.Store("invalid_grant")
			},
			func(t *testing.T, o *oauthReceiver, f string) { o.tokenFault.Store("") }},
		{"push endpoint starts answering 404", "endpoint_not_found",
			func(o *oauthReceiver, f string) {
				_ = os.WriteFile(f, []byte("new-secret\n"), 0o600)
				o.faultAfter.Store(300)
				o.pushFault.Store(http.StatusNotFound)
			},
			func(t *testing.T, o *oauthReceiver, f string) { o.pushFault.Store(0) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := newOAuthReceiver(t)
			rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: o.srv.URL + "/events", Concurrency: 32})
			cfg := rc.Config
			secretFile := filepath.Join(t.TempDir(), "client_secret")
			if err := os.WriteFile(secretFile, []byte("old-secret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &cfg.Receivers[0]
			var err error
			r.Auth.TokenURL, r.Auth.ClientID, r.Auth.ClientSecretFile = o.srv.URL+"/token", "relay", secretFile
			r.Pause.Initial, r.Pause.Max, r.Pause.ProbeInterval = time.Second, 2*time.Second, 250*time.Millisecond
			cfg.FillDefaults()
			tc.break_(o, secretFile)
			if *r, err = r.ReloadSecrets(); err != nil { // what Load read from the file
				t.Fatal(err)
			}

			core, logs := observer.New(zapcore.InfoLevel)
			reg := prometheus.NewRegistry()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			svc, err := Start(ctx, cfg, zap.New(core), reg)
			if err != nil {
				t.Fatal(err)
			}
			js := svc.JetStream()
			publishN(t, svc.ClientURL(), n)

			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- svc.Run(ctx) }()
			defer func() { cancel(); <-done }()

			waitUntil(t, 5*time.Second, "the receiver blocked", func() bool { return stateOf(t, reg, "local") == "blocked" })
			t.Logf("blocked after %v", time.Since(start).Round(time.Millisecond))
			time.Sleep(700 * time.Millisecond) // a few refused probes
			if d := testenv.StreamMsgs(t, js, queue.DLQStream); d != 0 {
				t.Fatalf("%d dead letters while blocked, want 0", d)
			}
			errLines := logs.FilterMessageSnippet("receiver blocked").FilterLevelExact(zapcore.ErrorLevel).All()
			if len(errLines) != 1 {
				t.Fatalf("%d error lines, want exactly 1", len(errLines))
			}
			if r := errLines[0].ContextMap()["reason"]; r != tc.reason {
				t.Fatalf("blocked for %v, want %s", r, tc.reason)
			}
			if fix := fmt.Sprint(errLines[0].ContextMap()["fix"]); !strings.Contains(fix, "receivers[0]") {
				t.Fatalf("fix %q does not name the setting", fix)
			}
			pushesWhileBlocked := o.pushes.Load()

			tc.fix(t, o, secretFile)
			fixed := time.Now()
			waitUntil(t, 60*time.Second, "every intent delivered", func() bool { return testenv.StreamMsgs(t, js, queue.IntentStream) == 0 })
			t.Logf("all %d delivered %v after the fix (%d pushes while blocked)", n, time.Since(fixed).Round(time.Millisecond), pushesWhileBlocked)

			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.jti) != n {
				t.Fatalf("%d distinct jti delivered, want %d", len(o.jti), n)
			}
			for jti, c := range o.jti {
				if c != 1 {
					t.Fatalf("jti %s delivered %d times, want exactly once", jti, c)
				}
			}
			if d := testenv.StreamMsgs(t, js, queue.DLQStream); d != 0 {
				t.Fatalf("%d dead letters, want 0", d)
			}
			// No attempt was counted for the block: every delivery was
			// its intent's first attempt.
			count, sum := histogram(t, reg, "setrelay_attempts_per_delivery")
			if count != n || sum != n {
				t.Fatalf("attempts histogram count %v sum %v, want %d and %d (all first attempts)", count, sum, n, n)
			}
			if st := stateOf(t, reg, "local"); st != "ok" {
				t.Fatalf("state %s after recovery, want ok", st)
			}
		})
	}
}

func publishN(t *testing.T, url string, n int) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1024))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		in := &intent.Intent{ID: fmt.Sprintf("blk-%05d", i), Type: "risc.account-disabled",
			Subject: map[string]any{"format": "email", "email": fmt.Sprintf("u%d@example.com", i)}}
		data, err := queue.Encode(in, intent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: queue.IntentSubject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, in.ID)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("publishes not acked within 30s")
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stateOf is the receiver's setrelay_receiver_state.
func stateOf(t *testing.T, reg *prometheus.Registry, receiver string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "setrelay_receiver_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			vals := map[string]string{}
			for _, lp := range m.GetLabel() {
				vals[lp.GetName()] = lp.GetValue()
			}
			if vals["receiver"] == receiver && m.GetGauge().GetValue() == 1 {
				return vals["state"]
			}
		}
	}
	return ""
}

func histogram(t *testing.T, reg *prometheus.Registry, name string) (count, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				count += float64(m.GetHistogram().GetSampleCount())
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return count, sum
}
