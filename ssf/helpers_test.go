package ssf_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/ssf"
)

const (
	issuer   = "https://tx.example/issuer1"
	tokenA   = "token-of-client-a"
	tokenB   = "token-of-client-b"
	tokenRO  = "token-read-only"
	audA     = "https://rcv-a.example/"
	audB     = "https://rcv-b.example/"
	caepType = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	riscType = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
)

// tx is a transmitter under test: a real embedded JetStream, a real
// signing key, the API served over TLS by httptest, and a client that
// trusts it, as a receiver would use.
type tx struct {
	t      testing.TB
	js     *testenv.JetStream
	key    *signer.Key
	srv    *ssf.Server
	https  *httptest.Server
	client *http.Client
	base   string
	nc     *nats.Conn
}

type txOptions struct {
	DefaultSubjects string
	Critical        []string
	PollAckWait     time.Duration
	MaxPollWait     time.Duration
	MinVerify       time.Duration
	MaxStreams      int
	RootCAs         *x509.CertPool
	SubjectRate     float64
	JWT             *ssf.JWTAuth
	PushConcurrency int
	Inactivity      time.Duration
	Registry        *prometheus.Registry
	PublicOnly      bool
	EventsSupported []string
	js              *testenv.JetStream // a second process on the same JetStream
	key             *signer.Key
}

func newTX(t testing.TB, o txOptions) *tx {
	t.Helper()
	js := o.js
	if js == nil {
		js = testenv.StartJetStream(t, queue.Config{})
	}
	key := o.key
	if key == nil {
		var err error
		key, err = signer.GenerateKey(jose.ES256, "k1")
		if err != nil {
			t.Fatal(err)
		}
	}
	sg, err := signer.New(key)
	if err != nil {
		t.Fatal(err)
	}
	x := &tx{t: t, js: js, key: key}
	var h http.Handler
	x.https = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	x.https.StartTLS()
	t.Cleanup(x.https.Close)
	x.base = x.https.URL
	x.client = x.https.Client()
	x.client.Timeout = 60 * time.Second
	if o.MinVerify == 0 {
		o.MinVerify = time.Hour
	}
	cfg := ssf.Config{
		Issuer:  issuer,
		BaseURL: x.base,
		JWKSURI: "https://tx.example/jwks.json",
		Clients: []ssf.Client{
			{ID: "a", TokenSHA256: ssf.HashToken(tokenA), Audience: []string{audA}},
			{ID: "b", TokenSHA256: ssf.HashToken(tokenB), Audience: []string{audB, "https://other.example/"}},
			{ID: "ro", TokenSHA256: ssf.HashToken(tokenRO), Audience: []string{"https://ro.example/"}, Scopes: []string{ssf.ScopeRead}},
		},
		DefaultSubjects:         o.DefaultSubjects,
		CriticalSubjectMembers:  o.Critical,
		MinVerificationInterval: o.MinVerify,
		MaxStreamsPerClient:     o.MaxStreams,
		PollAckWait:             o.PollAckWait,
		MaxPollWait:             o.MaxPollWait,
		PushTLS:                 push.TLSConfig{RootCAs: o.RootCAs},
		AllowPrivateEndpoints:   !o.PublicOnly, // the test receivers are on 127.0.0.1
		SubjectRate:             o.SubjectRate,
		JWT:                     o.JWT,
		PushConcurrency:         o.PushConcurrency,
		InactivityTimeout:       o.Inactivity,
		EventsSupported:         o.EventsSupported,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := nats.Connect(js.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	x.nc = nc
	njs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deps := ssf.Deps{NC: nc, JS: njs, Signer: sg, SendKID: true, Log: zap.NewNop()}
	if o.Registry != nil {
		deps.Registerer = o.Registry
	}
	x.srv, err = ssf.New(ctx, cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	h = x.srv.Handler()
	return x
}

// do sends a request as a receiver would and returns the status and body.
func (x *tx) do(method, path, token string, body any) (int, []byte, http.Header) {
	x.t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				x.t.Fatal(err)
			}
			rd = bytes.NewReader(j)
		}
	}
	url := path
	if !strings.HasPrefix(path, "https://") {
		url = x.base + path
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		x.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := x.client.Do(req)
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		x.t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// must sends a request and fails the test unless the status is want;
// it decodes the body into out when out is not nil.
func (x *tx) must(want int, method, path, token string, body, out any) {
	x.t.Helper()
	status, b, _ := x.do(method, path, token, body)
	if status != want {
		x.t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			x.t.Fatalf("%s %s: body %s: %v", method, path, b, err)
		}
	}
}

// createPoll creates a poll stream for token's client, requesting types.
func (x *tx) createPoll(token string, types ...string) map[string]any {
	x.t.Helper()
	var st map[string]any
	x.must(201, "POST", "/ssf/streams", token, map[string]any{
		"events_requested": types,
		"delivery":         map[string]any{"method": ssf.MethodPoll},
	}, &st)
	return st
}

// publish publishes intents asynchronously and waits for every ack.
func (x *tx) publish(ins ...*intent.Intent) {
	x.t.Helper()
	js := x.js.JS
	for _, in := range ins {
		data, err := queue.Encode(in, intent.Options{})
		if err != nil {
			x.t.Fatal(err)
		}
		msg := &nats.Msg{Subject: queue.IntentSubject, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, in.ID)
		if _, err := js.PublishMsgAsync(msg); err != nil {
			x.t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		x.t.Fatal("async publishes not acked within 30s")
	}
}

func sessionRevoked(id, email string) *intent.Intent {
	return &intent.Intent{ID: id, Type: "caep.session-revoked", Subject: map[string]any{"format": "email", "email": email},
		Event: map[string]any{"event_timestamp": float64(1700000000)}, Txn: "txn-" + id}
}

type pollResp struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable"`
}

func (x *tx) poll(token, streamID string, req map[string]any) pollResp {
	x.t.Helper()
	var out pollResp
	x.must(200, "POST", "/ssf/poll/"+streamID, token, req, &out)
	return out
}

// verifiedClaims checks a SET with lestrrat-go/jwx, independently of the
// go-jose that signed it, and checks the SSF SET profile: typ
// secevent+jwt, kid, iss, aud, sub_id present, no sub or exp, one event.
func (x *tx) verifiedClaims(compact string, aud string) map[string]any {
	x.t.Helper()
	payload, err := jws.Verify([]byte(compact), jws.WithKey(jwa.ES256(), x.key.Public()))
	if err != nil {
		x.t.Fatalf("jwx rejects SET %q: %v", compact, err)
	}
	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		x.t.Fatal(err)
	}
	hdr := msg.Signatures()[0].ProtectedHeaders()
	if typ, _ := hdr.Type(); typ != "secevent+jwt" {
		x.t.Fatalf("typ %q, want secevent+jwt", typ)
	}
	if kid, _ := hdr.KeyID(); kid != "k1" {
		x.t.Fatalf("kid %q, want k1", kid)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		x.t.Fatal(err)
	}
	if claims["iss"] != issuer {
		x.t.Fatalf("iss %v, want %s", claims["iss"], issuer)
	}
	if claims["aud"] != aud {
		x.t.Fatalf("aud %v, want %s", claims["aud"], aud)
	}
	if _, ok := claims["sub_id"].(map[string]any); !ok {
		x.t.Fatalf("no sub_id object in %s", payload)
	}
	for _, banned := range []string{"sub", "exp"} {
		if _, ok := claims[banned]; ok {
			x.t.Fatalf("SET has %q: %s", banned, payload)
		}
	}
	if ev, _ := claims["events"].(map[string]any); len(ev) != 1 {
		x.t.Fatalf("want exactly one event: %s", payload)
	}
	return claims
}

func eventOf(claims map[string]any) (string, map[string]any) {
	for k, v := range claims["events"].(map[string]any) {
		m, _ := v.(map[string]any)
		return k, m
	}
	return "", nil
}

func idN(prefix string, i int) string { return fmt.Sprintf("%s-%05d", prefix, i) }

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not true within %s", what, within)
}

// consumerExists checks whether the stream's durable consumer is on the server.
func (x *tx) consumerExists(streamID string, want bool) {
	x.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := x.js.JS.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ssf.ReceiverName(streamID)))
	if got := err == nil; got != want {
		x.t.Fatalf("consumer of stream %s exists: %v, want %v (%v)", streamID, got, want, err)
	}
}

// serve starts an HTTPS server for an x.srv built by the test itself.
func (x *tx) serve() {
	x.https = httptest.NewTLSServer(x.srv.Handler())
	x.t.Cleanup(x.https.Close)
	x.base = x.https.URL
	x.client = x.https.Client()
	x.client.Timeout = 60 * time.Second
}
