package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// TestDeliversRequestedTypes: 2,000 intents of 3 event types, 2 receivers
// asking for different (overlapping) types. Each receiver gets every SET it
// asked for, none it did not, and every SET verifies with jwx.
func TestDeliversRequestedTypes(t *testing.T) {
	e := newEnv(t, 30*time.Second, "alpha", "beta")
	alpha, beta := e.devReceiver("alpha"), e.devReceiver("beta")
	wants := map[string][]string{
		"alpha": {typeRevoked, "caep.credential-change"}, // an alias resolves too
		"beta":  {typeCred, typePurged},
	}
	wantURIs := map[string][]string{"alpha": {typeRevoked, typeCred}, "beta": {typeCred, typePurged}}
	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 32, Receivers: []Receiver{
		e.spec(e.js, "alpha", alpha.endpoint(), wants["alpha"]...),
		e.spec(e.js, "beta", beta.endpoint(), wants["beta"]...),
	}}, e.js, reg)

	const n = 2000
	start := time.Now()
	types := []string{typeRevoked, typeCred, typePurged}
	expect := map[string]map[string]bool{"alpha": {}, "beta": {}} // receiver -> jti
	ins := make([]*intent.Intent, 0, n)
	for i := 0; i < n; i++ {
		id := idN("mix", i)
		typ := types[i%3]
		ins = append(ins, testIntent(id, typ))
		for rcv, uris := range wantURIs {
			if slices.Contains(uris, typ) {
				expect[rcv][set.JTI(id, rcv, "")] = true
			}
		}
	}
	e.publishMany(ins)
	published := time.Now()
	eventually(t, 60*time.Second, "every intent settled by both receivers", func() bool { return e.intentsLeft() == 0 })
	t.Logf("published %d in %v; all settled %v later", n, published.Sub(start), time.Since(published))

	for name, d := range map[string]*devReceiver{"alpha": alpha, "beta": beta} {
		st := d.Stats()
		if st.Accepted != int64(len(expect[name])) {
			t.Errorf("%s accepted %d SETs, want %d (stats %+v)", name, st.Accepted, len(expect[name]), st)
		}
		if len(st.Violations) != 0 {
			t.Errorf("%s saw conformance violations: %v", name, st.Violations)
		}
		got := map[string]bool{}
		for _, body := range d.bodies() {
			claims := verifiedClaims(t, e.key, body)
			jti, _ := claims["jti"].(string)
			if !expect[name][jti] {
				t.Fatalf("%s got a SET it should not have: jti %s", name, jti)
			}
			for _, typ := range eventTypes(claims) {
				if !slices.Contains(wantURIs[name], typ) {
					t.Fatalf("%s got event type %s it did not request", name, typ)
				}
			}
			if claims["aud"] != "https://"+name+".example.org/" || claims["iss"] != testIssuer {
				t.Fatalf("%s: wrong aud/iss in %v", name, claims)
			}
			got[jti] = true
		}
		if len(got) != len(expect[name]) {
			t.Errorf("%s: %d distinct SETs verified, want %d", name, len(got), len(expect[name]))
		}
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0; first: %+v", len(dls), dls[0].DeadLetter)
	}
	// Skips are counted: each receiver skips the type it did not ask for.
	for _, name := range []string{"alpha", "beta"} {
		skipped := metricValue(t, reg, "setrelay_deliveries_total", name, "skipped")
		if want := float64(n - len(expect[name])); skipped != want {
			t.Errorf("%s skipped %v, want %v", name, skipped, want)
		}
	}
}

// scripted is a plain receiver answering from a script, recording every
// request body and time.
type scripted struct {
	mu     sync.Mutex
	bodies [][]byte
	times  []time.Time
	answer func(n int, w http.ResponseWriter, r *http.Request) // n counts from 1
	srv    *httptest.Server
}

func newScripted(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request)) *scripted {
	s := &scripted{answer: answer}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, body)
		s.times = append(s.times, time.Now())
		n := len(s.bodies)
		s.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body)) // for answers that forward it
		s.answer(n, w, r)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *scripted) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bodies)
}

func (s *scripted) endpoint() string { return s.srv.URL + "/events" }

// TestRetryKeepsJTIAndClaims: a receiver failing the first 3 attempts, then
// accepting. The SET is delivered, and every attempt carried the same jti
// and byte-identical claims.
func TestRetryKeepsJTIAndClaims(t *testing.T) {
	e := newEnv(t, 30*time.Second, "flaky")
	s := newScripted(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n <= 3 {
			if n == 3 {
				// The last retry comes over a second later, so claims
				// stamped with the time of the push (not the stored
				// time) would differ in iat.
				w.Header().Set("Retry-After", "2")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	reg := prometheus.NewRegistry()
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "flaky", s.endpoint())}}, e.js, reg)
	e.publish(sessionRevoked("retry-1"))
	stream, err := e.js.Stream(context.Background(), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}

	eventually(t, 10*time.Second, "the intent acked", func() bool { return s.requests() >= 4 && e.intentsLeft() == 0 })
	if gap := s.times[3].Sub(s.times[0]); gap < time.Second {
		t.Fatalf("attempts span %v; the test needs them over a second apart", gap)
	}
	if got := s.requests(); got != 4 {
		t.Fatalf("%d requests, want 4", got)
	}
	var first []byte
	for i, body := range s.bodies {
		claims := verifiedClaims(t, e.key, body)
		if claims["jti"] != set.JTI("retry-1", "flaky", "") {
			t.Errorf("attempt %d: jti %v", i+1, claims["jti"])
		}
		if iat, _ := claims["iat"].(float64); int64(iat) != stored.Time.Unix() {
			t.Errorf("attempt %d: iat %v, want the intent's stored time %d", i+1, claims["iat"], stored.Time.Unix())
		}
		payload := payloadOf(t, body)
		if i == 0 {
			first = payload
		} else if !bytes.Equal(payload, first) {
			t.Errorf("attempt %d claims differ:\n%s\n%s", i+1, payload, first)
		}
	}
	if got := metricValue(t, reg, "setrelay_deliveries_total", "flaky", "delivered"); got != 1 {
		t.Errorf("delivered counter %v, want 1", got)
	}
	if got := metricValue(t, reg, "setrelay_retries_total", "flaky", "http_5xx"); got != 3 {
		t.Errorf("retries counter %v, want 3", got)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want 0", len(dls))
	}
}

// TestInvalidAudienceDeadLettered: a 400 invalid_audience for one intent,
// with nothing else to tell an intent's problem from the receiver's, is
// dead-lettered after exactly BlockStreak (3) attempts (see BlockStreak),
// with reason, status, err, description and the original intent bytes.
func TestInvalidAudienceDeadLettered(t *testing.T) {
	e := newEnv(t, 30*time.Second, "strict")
	s := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"err":"invalid_audience","description":"aud is not https://strict.example.org/events"}`))
	})
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "strict", s.endpoint())}}, e.js, nil)
	in := sessionRevoked("aud-1")
	e.publish(in)

	var dls []queue.StoredDeadLetter
	eventually(t, 10*time.Second, "a dead letter", func() bool { dls = e.deadLetters(); return len(dls) > 0 })
	eventually(t, 5*time.Second, "the intent termed", func() bool { return e.intentsLeft() == 0 })
	time.Sleep(200 * time.Millisecond) // room for a wrong retry to show up
	if got := s.requests(); got != BlockStreak {
		t.Fatalf("%d attempts, want exactly %d", got, BlockStreak)
	}
	dl := dls[0].DeadLetter
	if len(dls) != 1 || dl.Reason != "invalid_audience" || dl.Status != 400 || dl.Err != "invalid_audience" ||
		!strings.Contains(dl.Description, "aud is not") || dl.Attempts != BlockStreak || dl.Receiver != "strict" ||
		dl.IntentID != "aud-1" || dl.StreamSeq == 0 || dl.FirstAttempt.IsZero() || dl.LastAttempt.Before(dl.FirstAttempt) {
		t.Fatalf("dead letter %+v (of %d)", dl, len(dls))
	}
	var got map[string]any
	if err := json.Unmarshal(dl.Intent, &got); err != nil || got["id"] != "aud-1" {
		t.Errorf("dead letter intent bytes %q: %v", dl.Intent, err)
	}
}

// TestOwnInvalidAudienceAmongGoodOnes: a receiver that rejects one intent's
// audience but accepts the others dead-letters that intent on its second
// attempt (other SETs got through meanwhile: the problem is the intent's)
// and is not blocked.
func TestOwnInvalidAudienceAmongGoodOnes(t *testing.T) {
	e := newEnv(t, 30*time.Second, "picky")
	s := newScripted(t, func(_ int, w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(".")) && strings.Contains(decodedPayload(body), "odd-one") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"err":"invalid_audience"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	reg := prometheus.NewRegistry()
	spec := e.spec(e.js, "picky", s.endpoint())
	spec.Retry = RetryPolicy{Initial: 200 * time.Millisecond, Max: time.Second}
	e.run(Config{Concurrency: 4, Receivers: []Receiver{spec}}, e.js, reg)
	e.publish(sessionRevoked("odd-one"))
	for i := range 20 {
		e.publish(sessionRevoked(idN("fine", i)))
	}
	eventually(t, 10*time.Second, "every intent settled", func() bool { return e.intentsLeft() == 0 })
	dls := e.deadLetters()
	// Attempt 2 when the fine intents were accepted before its retry came
	// round; on a loaded machine they may not have been, and then the rule
	// (BlockStreak attempts at most) dead-letters it on attempt 3. Either
	// way it is the intent's own verdict, never a block.
	if len(dls) != 1 || dls[0].IntentID != "odd-one" || dls[0].Reason != "invalid_audience" || dls[0].Attempts < 2 || dls[0].Attempts > BlockStreak {
		t.Fatalf("dead letters %+v, want odd-one's alone, invalid_audience on attempt 2 or %d", dls, BlockStreak)
	}
	if got := metricValue(t, reg, "setrelay_deliveries_total", "picky", "delivered"); got != 20 {
		t.Fatalf("%v delivered, want 20", got)
	}
}

// decodedPayload is the JSON payload of a compact JWS, or "".
func decodedPayload(jws []byte) string {
	parts := strings.Split(string(jws), ".")
	if len(parts) != 3 {
		return ""
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	return string(b)
}

// TestInvalidIntentDoesNotBlock: an invalid intent is dead-lettered in under
// a second, never pushed, and the intents behind it are delivered.
func TestInvalidIntentDoesNotBlock(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	e.run(Config{Concurrency: 8, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, nil)

	bad := []byte(`{"id":"bad-1","type":"caep.session-revokd","subject":{"format":"email"},"surprise":true}`)
	start := time.Now()
	e.publishRaw("bad-1", bad)
	for i := 0; i < 20; i++ {
		e.publish(sessionRevoked(idN("after-bad", i)))
	}
	var dls []queue.StoredDeadLetter
	// The 1 s bound is measured on the server's clock, from storing the
	// intent (FirstAttempt) to storing its dead letter, so it times the
	// relay and not this test's polling on a loaded machine.
	eventually(t, 10*time.Second, "the invalid intent dead-lettered", func() bool { dls = e.deadLetters(); return len(dls) > 0 })
	t.Logf("invalid intent dead-letter seen after %v", time.Since(start))
	dl := dls[0].DeadLetter
	took := dls[0].Stored.Sub(dl.FirstAttempt)
	t.Logf("stored to dead-lettered: %v", took)
	if took >= time.Second || took < 0 {
		t.Errorf("invalid intent dead-lettered %v after it was stored, want under 1s", took)
	}
	if dl.Reason != ReasonInvalidIntent || len(dl.Errors) < 2 || !bytes.Equal(dl.Intent, bad) || dl.Attempts != 1 {
		t.Fatalf("dead letter %+v", dl)
	}
	eventually(t, 10*time.Second, "the 20 valid intents delivered", func() bool { return d.Stats().Accepted == 20 && e.intentsLeft() == 0 })
	for _, body := range d.bodies() {
		if claims := verifiedClaims(t, e.key, body); strings.Contains(claims["jti"].(string), "bad") {
			t.Fatal("the invalid intent was pushed")
		}
	}
	if n := len(e.deadLetters()); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
}

// TestRetryAfterHonoured: after a 429 with Retry-After: 2, the next attempt
// comes no sooner than 2 s later (the retry schedule alone would be 50 ms).
func TestRetryAfterHonoured(t *testing.T) {
	e := newEnv(t, 30*time.Second, "busy")
	s := newScripted(t, func(n int, w http.ResponseWriter, _ *http.Request) {
		if n == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "busy", s.endpoint())}}, e.js, nil)
	e.publish(sessionRevoked("ra-1"))
	eventually(t, 10*time.Second, "delivery after the 429", func() bool { return s.requests() >= 2 && e.intentsLeft() == 0 })
	gap := s.times[1].Sub(s.times[0])
	if gap < 2*time.Second {
		t.Fatalf("second attempt %v after the 429, want >= 2s", gap)
	}
	if gap > 4*time.Second {
		t.Errorf("second attempt %v after the 429, want about 2s", gap)
	}
	t.Logf("second attempt %v after the 429", gap)
}

func payloadOf(t *testing.T, compact []byte) []byte {
	t.Helper()
	parts := bytes.Split(compact, []byte("."))
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", compact)
	}
	return parts[1] // base64url of the payload: equal iff the claims bytes are
}

// metricValue reads a counter or gauge from reg by name and label values
// (receiver, then outcome or reason); 0 when the series does not exist.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			vals := map[string]string{}
			for _, lp := range m.GetLabel() {
				vals[lp.GetName()] = lp.GetValue()
			}
			var ordered []string
			for _, k := range []string{"receiver", "outcome", "reason"} {
				if v, ok := vals[k]; ok {
					ordered = append(ordered, v)
				}
			}
			if slices.Equal(ordered, labels) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
