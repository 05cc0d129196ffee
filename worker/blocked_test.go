package worker

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// receiverState reads setrelay_receiver_state for one receiver: the state
// whose series is 1, and its reason.
func receiverState(t testing.TB, reg *prometheus.Registry, receiver string) (state, reason string) {
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
				return vals["state"], vals["reason"]
			}
		}
	}
	return "", ""
}

// tokenServer is an OAuth token endpoint answering with answer, or a
// token when answer is nil.
func tokenServer(t *testing.T, answer func(w http.ResponseWriter)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answer != nil {
			answer(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func oauthError(status int, code string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"error":%q}`, code)
	}
}

// unusableKey stands in for a KMS key that was disabled: it signs nothing
// and says so with signer.ErrKeyUnusable, as the KMS key source does.
type unusableKey struct{}

func (unusableKey) Sign([]byte, bool) (string, error) {
	return "", fmt.Errorf("kms: DisabledException: key is disabled: %w", signer.ErrKeyUnusable)
}

// TestConfigurationFailuresBlock: one receiver per classified configuration
// failure, all fed the same intents by one pool. Each ends blocked with its
// reason, its consumer paused on the server and its state in the bucket,
// with no dead letter, no intent settled, and one error line naming the fix.
func TestConfigurationFailuresBlock(t *testing.T) {
	accept := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	status := func(code int) *scripted {
		return newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
			if code == http.StatusFound {
				http.Redirect(w, r, "https://elsewhere.example/events", code)
				return
			}
			w.WriteHeader(code)
		})
	}
	rfc8935 := func(code string) *scripted {
		return newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = fmt.Fprintf(w, `{"err":%q,"description":"no"}`, code)
		})
	}
	// What an API gateway in front of a receiver answers a relay whose
	// address is not on the allow-list (GOV.UK allow-lists the sending IP).
	forbidden := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"message":"Forbidden"}`))
	})
	// RFC 6750 3.1: the token lacks a scope the receiver needs, which is
	// the configuration's scopes, for every SET.
	scope := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="ssf/push"`)
		w.WriteHeader(http.StatusForbidden)
	})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	t.Cleanup(tlsSrv.Close)
	trusted := x509.NewCertPool()
	trusted.AddCert(tlsSrv.Certificate())
	u, _ := url.Parse(tlsSrv.URL)
	wrongName := "https://localhost:" + u.Port() + "/events" // the certificate is for 127.0.0.1 and example.com

	type tc struct {
		name   string
		cfg    push.Config
		signer Signer
		reason string
	}
	oauth := func(name, endpoint string, answer func(w http.ResponseWriter)) push.Config {
		return push.Config{Name: name, Endpoint: endpoint, InsecureHTTP: true, Auth: push.AuthConfig{
			TokenURL: tokenServer(t, answer).URL + "/token", ClientID: "relay", ClientSecret: "s3cret"}}
	}
	html := func(status int) func(w http.ResponseWriter) {
		return func(w http.ResponseWriter) { w.WriteHeader(status); _, _ = w.Write([]byte("<html>nope</html>")) }
	}
	cases := []tc{
		{name: "invalid_client", cfg: oauth("invalid_client", accept.endpoint(), oauthError(400, "invalid_client")), reason: push.ReasonTokenConfig},
		{name: "unauthorized_client", cfg: oauth("unauthorized_client", accept.endpoint(), oauthError(400, "unauthorized_client")), reason: push.ReasonTokenConfig},
		{name: "invalid_grant", cfg: oauth("invalid_grant", accept.endpoint(), oauthError(400, "invalid_grant")), reason: push.ReasonTokenConfig},
		{name: "invalid_scope", cfg: oauth("invalid_scope", accept.endpoint(), oauthError(400, "invalid_scope")), reason: push.ReasonTokenConfig},
		{name: "unsupported_grant_type", cfg: oauth("unsupported_grant_type", accept.endpoint(), oauthError(400, "unsupported_grant_type")), reason: push.ReasonTokenConfig},
		// RFC 8707's code for a resource the endpoint does not serve:
		// not in RFC 6749's list, still the same answer every time.
		{name: "invalid_target", cfg: oauth("invalid_target", accept.endpoint(), oauthError(400, "invalid_target")), reason: push.ReasonTokenConfig},
		// RFC 6749 7.1: a token of a type the relay does not understand
		// is never sent, and every token from there will be of it.
		{name: "token_type_mac", cfg: oauth("token_type_mac", accept.endpoint(), func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"access_token":"tok-1","token_type":"mac","expires_in":3600}`))
		}), reason: push.ReasonTokenConfig},
		{name: "token_not_oauth", cfg: oauth("token_not_oauth", accept.endpoint(), html(200)), reason: push.ReasonTokenConfig},
		{name: "token_404", cfg: oauth("token_404", accept.endpoint(), html(404)), reason: push.ReasonTokenConfig},
		{name: "refused_after_refresh", cfg: oauth("refused_after_refresh", status(401).endpoint(), nil), reason: push.ReasonAuthenticationFailed},
		{name: "push_404", cfg: push.Config{Name: "push_404", Endpoint: status(404).endpoint(), InsecureHTTP: true}, reason: push.ReasonEndpointNotFound},
		{name: "push_405", cfg: push.Config{Name: "push_405", Endpoint: status(405).endpoint(), InsecureHTTP: true}, reason: push.ReasonEndpointNotFound},
		{name: "push_410", cfg: push.Config{Name: "push_410", Endpoint: status(410).endpoint(), InsecureHTTP: true}, reason: push.ReasonEndpointNotFound},
		{name: "push_403", cfg: push.Config{Name: "push_403", Endpoint: forbidden.endpoint(), InsecureHTTP: true}, reason: push.ReasonForbidden},
		{name: "insufficient_scope", cfg: oauth("insufficient_scope", scope.endpoint(), nil), reason: push.ReasonInsufficientScope},
		{name: "push_415", cfg: push.Config{Name: "push_415", Endpoint: status(415).endpoint(), InsecureHTTP: true}, reason: push.ReasonEndpointNotFound},
		{name: "push_redirect", cfg: push.Config{Name: "push_redirect", Endpoint: status(302).endpoint(), InsecureHTTP: true}, reason: push.ReasonRedirect},
		{name: "tls_untrusted", cfg: push.Config{Name: "tls_untrusted", Endpoint: tlsSrv.URL + "/events"}, reason: push.ReasonTLS},
		{name: "tls_wrong_name", cfg: push.Config{Name: "tls_wrong_name", Endpoint: wrongName, TLS: push.TLSConfig{RootCAs: trusted}}, reason: push.ReasonTLS},
		{name: "invalid_key", cfg: push.Config{Name: "invalid_key", Endpoint: rfc8935("invalid_key").endpoint(), InsecureHTTP: true}, reason: push.ReasonInvalidKey},
		{name: "invalid_issuer", cfg: push.Config{Name: "invalid_issuer", Endpoint: rfc8935("invalid_issuer").endpoint(), InsecureHTTP: true}, reason: push.ReasonInvalidIssuer},
		{name: "invalid_audience", cfg: push.Config{Name: "invalid_audience", Endpoint: rfc8935("invalid_audience").endpoint(), InsecureHTTP: true}, reason: push.ReasonInvalidAudience},
		{name: "key_unusable", cfg: push.Config{Name: "key_unusable", Endpoint: accept.endpoint(), InsecureHTTP: true}, signer: unusableKey{}, reason: ReasonKeyUnusable},
	}
	names := make([]string, len(cases))
	for i, c := range cases {
		names[i] = c.name
	}
	e := newEnv(t, 30*time.Second, names...)
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	var specs []Receiver
	for _, c := range cases {
		c.cfg.Timeout = 5 * time.Second
		pc, err := push.New(c.cfg, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s := e.spec(e.js, c.name, "http://unused.invalid/")
		s.Pusher = pc
		if c.signer != nil {
			s.Signer = c.signer
		}
		s.Pause = PausePolicy{Threshold: 5, Initial: time.Second, Max: 2 * time.Second, ProbeInterval: 300 * time.Millisecond}
		// Retries far enough apart that the other intents show the
		// rejection is receiver-wide before one runs out of tries.
		s.Retry.Initial, s.Retry.Max = 300*time.Millisecond, time.Second
		s.Hints = Hints{Path: "receivers[x] (" + c.name + ")", KeyFile: "keys/k1.pem"}
		specs = append(specs, s)
	}
	p, err := New(Config{Concurrency: 32, FetchWait: 300 * time.Millisecond, InfoInterval: 200 * time.Millisecond, Receivers: specs},
		Deps{JS: e.js, Log: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	const n = 8
	for i := range n {
		e.publish(sessionRevoked(idN("cfg", i)))
	}
	for _, c := range cases {
		eventually(t, 20*time.Second, c.name+" blocked", func() bool {
			st, _ := receiverState(t, reg, c.name)
			return st == "blocked"
		})
	}
	// Let a few probes run (each is refused the same way again).
	time.Sleep(time.Second)

	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0: first %+v", len(dls), dls[0].DeadLetter)
	}
	kv, err := e.js.KeyValue(context.Background(), StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		st, reason := receiverState(t, reg, c.name)
		if st != "blocked" || reason != c.reason {
			t.Errorf("%s: state %s/%s, want blocked/%s", c.name, st, reason, c.reason)
		}
		// Paused on the server, but for the moments a probe resumes it.
		eventually(t, 5*time.Second, c.name+" consumer paused", func() bool { return e.consumerInfo(c.name).Paused })
		entry, err := kv.Get(context.Background(), queue.Token(c.name)+".state")
		if err != nil {
			t.Errorf("%s: state record: %v", c.name, err)
			continue
		}
		var rec stateRecord
		if err := json.Unmarshal(entry.Value(), &rec); err != nil || rec.State != "blocked" || rec.Reason != c.reason || rec.Fix == "" {
			t.Errorf("%s: state record %s (%v)", c.name, entry.Value(), err)
		}
		var lines []observer.LoggedEntry
		for _, le := range logs.FilterMessageSnippet("receiver blocked").FilterField(zap.String("receiver", c.name)).All() {
			if le.Level == zapcore.ErrorLevel {
				lines = append(lines, le)
			}
		}
		if len(lines) != 1 {
			t.Errorf("%s: %d error lines, want 1", c.name, len(lines))
		} else if fix := lines[0].ContextMap()["fix"]; fix == nil || !strings.Contains(fmt.Sprint(fix), "receivers[x]") {
			t.Errorf("%s: fix %v does not name the setting", c.name, fix)
		}
	}
	// No intent was settled for any blocked receiver: every one is still in
	// the stream, and no attempt was spent on a delivery.
	if left := e.intentsLeft(); left != n {
		t.Fatalf("%d intents left in the stream, want all %d", left, n)
	}
}

// TestUnblockRequestAcrossProcesses: two processes (pools on their own
// connections) serve a receiver whose token endpoint rejects the client.
// One blocks it; the other adopts the block from the state bucket. Once the
// endpoint is fixed, RequestProbe (what `setrelay receivers unblock` runs)
// has it probed and unblocked for both at once, long before the next
// scheduled probe, and every intent is delivered once.
func TestUnblockRequestAcrossProcesses(t *testing.T) {
	e := newEnv(t, 30*time.Second, "gov")
	var broken atomic.Bool
	broken.Store(true)
	var tokens atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if broken.Load() {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(ts.Close)
	rcv := e.devReceiver("gov")
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for _, reg := range regs {
		js, err := jetstream.New(e.connect())
		if err != nil {
			t.Fatal(err)
		}
		pcfg := push.Config{Name: "gov", Endpoint: rcv.endpoint(), InsecureHTTP: true, Timeout: 5 * time.Second,
			Auth: push.AuthConfig{TokenURL: ts.URL + "/token", ClientID: "relay", ClientSecret: "s"}}
		pc, err := push.New(pcfg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := e.spec(js, "gov", rcv.endpoint())
		s.Pusher = pc
		// As relay does: a fresh client (and token) for every probe.
		s.Reload = func(context.Context) (Signer, Pusher, error) {
			pc, err := push.New(pcfg, nil, nil)
			return e.sig, pc, err
		}
		// Scheduled probes are 5 s apart, and more once they back off:
		// only the request can explain a recovery within the bound below.
		s.Pause = PausePolicy{Threshold: 5, Initial: 20 * time.Second, Max: time.Minute, ProbeInterval: 5 * time.Second}
		e.run(Config{Concurrency: 8, Receivers: []Receiver{s}}, js, reg)
	}
	const n = 50
	ins := make([]*intent.Intent, n)
	for i := range ins {
		ins[i] = sessionRevoked(idN("unblock", i))
	}
	e.publishMany(ins)
	for i, reg := range regs {
		eventually(t, 10*time.Second, fmt.Sprintf("process %d sees the receiver blocked", i), func() bool {
			st, _ := receiverState(t, reg, "gov")
			return st == "blocked"
		})
	}
	st, err := SharedState(context.Background(), e.js, "gov")
	if err != nil || st.State != "blocked" || st.Reason != push.ReasonTokenConfig {
		t.Fatalf("shared state %+v (%v)", st, err)
	}
	time.Sleep(500 * time.Millisecond)
	before := tokens.Load()
	broken.Store(false)
	time.Sleep(500 * time.Millisecond)
	if tokens.Load() != before {
		t.Fatal("probed before the request: the schedule is not what this test assumes")
	}
	asked := time.Now()
	if err := RequestProbe(context.Background(), e.js, "gov"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2500*time.Millisecond, "a delivery soon after the request", func() bool { return rcv.Stats().Accepted > 0 })
	t.Logf("first delivery %v after the request", time.Since(asked).Round(time.Millisecond))
	// The intents handed back when the receiver blocked come back after
	// their hold (the probe interval).
	eventually(t, 15*time.Second, "every intent delivered", func() bool { return rcv.Stats().Accepted == n })
	for i, reg := range regs {
		eventually(t, 5*time.Second, fmt.Sprintf("process %d sees the receiver ok", i), func() bool {
			st, _ := receiverState(t, reg, "gov")
			return st == "ok"
		})
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
	eventually(t, 5*time.Second, "stream empty", func() bool { return e.intentsLeft() == 0 })
	if st := rcv.Stats(); st.Accepted != n {
		t.Fatalf("accepted %d, want exactly %d", st.Accepted, n)
	}
}

// TestForbiddenForOneIntentIsItsOwn: a receiver whose firewall answers 403
// to one intent's content and accepts the others. That 403 is the intent's
// own problem, not the relay's configuration: the intent is dead-lettered
// with reason, status, body and attempts, the others are delivered, and
// the receiver is never blocked. (TestConfigurationFailuresBlock has the
// other side: a 403 for every intent blocks without a dead letter.)
func TestForbiddenForOneIntentIsItsOwn(t *testing.T) {
	e := newEnv(t, 30*time.Second, "waf")
	s := newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(decodedPayload(body), "user-waf-bad@") {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte("<html>Request blocked by firewall rule 942100</html>"))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	spec := e.spec(e.js, "waf", s.endpoint())
	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 1, Receivers: []Receiver{spec}}, e.js, reg)

	e.publish(testIntent("waf-bad", typeRevoked))
	const good = 6
	for i := range good {
		e.publish(testIntent(idN("waf-ok", i), typeRevoked))
	}
	var dls []queue.StoredDeadLetter
	eventually(t, 15*time.Second, "dead letter", func() bool { dls = e.deadLetters(); return len(dls) == 1 })
	eventually(t, 15*time.Second, "all settled", func() bool { return e.intentsLeft() == 0 })
	dl := dls[0]
	if dl.IntentID != "waf-bad" || dl.Reason != push.ReasonForbidden || dl.Status != http.StatusForbidden ||
		!strings.Contains(dl.Body, "firewall rule") || dl.Attempts < 1 {
		t.Fatalf("dead letter %+v", dl.DeadLetter)
	}
	if st, reason := receiverState(t, reg, "waf"); st == "blocked" {
		t.Fatalf("receiver blocked (%s) by one intent's 403", reason)
	}
	if got := len(e.deadLetters()); got != 1 {
		t.Fatalf("%d dead letters, want 1", got)
	}
}
