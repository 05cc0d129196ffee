package push

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/secret"
)

// TestNoSecretOrTokenLeaks runs the push scenarios against hostile endpoints
// that echo credentials back, captures everything the package logs, returns,
// prints and exports as metrics, and scans it all for the client secret and
// the access tokens.
func TestNoSecretOrTokenLeaks(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	collect := func(what string, v ...any) {
		for _, x := range v {
			out = append(out, what+": "+fmt.Sprintf("%v | %+v | %#v | %s", x, x, x, x))
			if j, err := json.Marshal(x); err == nil {
				out = append(out, what+" json: "+string(j))
			}
		}
	}
	collectResult := func(name string, r Result) {
		collect(name+" result", r)
		if err := r.Error(); err != nil {
			collect(name+" error", err)
			for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
				collect(name+" cause", e)
			}
		}
	}
	push := func(name string, cfg Config, timeout time.Duration) {
		c, err := New(cfg, log, m)
		if err != nil {
			t.Fatalf("%s: New: %v", name, err)
		}
		defer c.CloseIdleConnections()
		collect(name+" config", cfg, &cfg)
		collect(name+" client", c, *c)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		collectResult(name, c.Push(ctx, []byte(testJWS)))
	}
	echo := func(status int) func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		return func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
			a := r.Header.Get("Authorization")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"err":"invalid_request","description":"you sent %s","echo":%q}`, a, a)
		}
	}

	// Delivered over TLS, then refused twice with the token echoed back.
	ts := newTokenServer(t, true)
	push("delivered", oauthConfig(newReceiver(t, true, nil), ts), 5*time.Second)
	push("401 echo", oauthConfig(newReceiver(t, true, echo(401)), ts), 5*time.Second)
	push("400 echo", oauthConfig(newReceiver(t, true, echo(400)), ts), 5*time.Second)
	push("500 echo", oauthConfig(newReceiver(t, true, echo(500)), ts), 5*time.Second)

	// A hanging receiver and a redirect.
	release := make(chan struct{})
	defer close(release)
	hang := oauthConfig(newReceiver(t, true, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}), ts)
	hang.Timeout = 200 * time.Millisecond
	push("hang", hang, 5*time.Second)
	push("redirect", oauthConfig(newReceiver(t, true, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		http.Redirect(w, r, "https://elsewhere.example/?x="+r.Header.Get("Authorization"), http.StatusFound)
	}), ts), 5*time.Second)

	// Token endpoints that echo the credentials they were sent.
	basic := base64.StdEncoding.EncodeToString([]byte(testClientID + ":" + testSecret))
	hostile := map[string]func(w http.ResponseWriter, r *http.Request, n int64){
		"token invalid_client echo": func(w http.ResponseWriter, r *http.Request, _ int64) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":"invalid_client","error_description":"bad secret %s (header %s)"}`, testSecret, r.Header.Get("Authorization"))
		},
		"token 500 echo": func(w http.ResponseWriter, r *http.Request, _ int64) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "internal error handling %s %s", testSecret, r.Header.Get("Authorization"))
		},
		"token bad json echo": func(w http.ResponseWriter, _ *http.Request, n int64) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"access_token":"%s","secret":"%s"`, tokenValue(n), testSecret)
		},
		"token form echo": func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprintf(w, "error=invalid_client&error_description=%s", testSecret)
		},
	}
	for name, respond := range hostile {
		hts := newTokenServer(t, true)
		hts.respond = respond
		cfg := oauthConfig(newReceiver(t, true, nil), hts)
		push(name, cfg, 5*time.Second)
		cfg.Auth.AuthStyle = AuthStyleForm
		push(name+" form", cfg, 5*time.Second)
	}

	// A static header, a config error mentioning it and a refused http:// URL.
	static := Config{Name: "static", Endpoint: "https://x.example", Auth: AuthConfig{AuthorizationHeader: secret.Value("Bearer " + tokenValue(99))}}
	collect("static config", static)
	_, err = New(Config{Name: "bad", Endpoint: "http://x.example", Auth: AuthConfig{
		TokenURL: "http://idp.example/token", ClientID: testClientID, ClientSecret: secret.Value(testSecret)}}, log, m)
	if err == nil {
		t.Fatal("http:// accepted without opt-in")
	}
	collect("config error", err)

	// Everything the package logged, with every field.
	for _, e := range logs.All() {
		out = append(out, e.Message, fmt.Sprintf("%+v", e.ContextMap()))
	}
	// Everything it exports as metrics.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	out = append(out, buf.String())

	// The scan must be able to fail: the hostile servers did echo secrets.
	if ts.requests.Load() == 0 || logs.Len() == 0 || len(out) < 50 {
		t.Fatalf("scenarios did not run: %d token requests, %d log entries, %d outputs", ts.requests.Load(), logs.Len(), len(out))
	}
	all := strings.Join(out, "\n")
	for _, needle := range []string{testSecret, testTokenMarker, basic} {
		if i := strings.Index(all, needle); i >= 0 {
			start := max(0, i-200)
			t.Errorf("found %q in output: ...%s...", needle, all[start:min(len(all), i+100)])
		}
	}
	// And the useful, non-secret parts are still there.
	for _, want := range []string{"invalid_client", "redirect", "timeout", "invalid_request", secret.Redacted} {
		if !strings.Contains(all, want) {
			t.Errorf("output lacks %q; the scan saw too little", want)
		}
	}
}
