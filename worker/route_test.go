package worker

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestIntentVerdictsOnce: with three receivers, an invalid intent and an
// intent naming only a receiver that does not exist (a typo) are each
// dead-lettered exactly once, by the owner receiver, and the stream lets
// them go; a valid intent behind them still reaches all three.
func TestIntentVerdictsOnce(t *testing.T) {
	names := []string{"gamma", "alpha", "beta"}
	e := newEnv(t, 30*time.Second, names...)
	accept := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	var specs []Receiver
	for _, n := range names {
		specs = append(specs, e.spec(e.js, n, accept.endpoint()))
	}
	e.run(Config{Concurrency: 8, Receivers: specs}, e.js, nil)

	e.publishRaw("bad-1", []byte(`{"id":"bad-1","type":"session-revoked","subject":{"format":"email"}}`))
	typo := sessionRevoked("typo-1")
	typo.Receivers = []string{"alpah"}
	e.publish(typo)
	e.publish(sessionRevoked("good-1"))

	eventually(t, 10*time.Second, "every intent settled by every receiver", func() bool { return e.intentsLeft() == 0 })
	time.Sleep(300 * time.Millisecond) // room for a second dead letter
	dls := e.deadLetters()
	byReason := map[string]int{}
	for _, d := range dls {
		byReason[d.Reason]++
		if d.Receiver != "alpha" {
			t.Errorf("dead letter %s given by %q, want the owner alpha", d.Reason, d.Receiver)
		}
	}
	if len(dls) != 2 || byReason[ReasonInvalidIntent] != 1 || byReason[ReasonUnknownReceiver] != 1 {
		t.Fatalf("dead letters by reason %v, want one invalid_intent and one unknown_receiver", byReason)
	}
	for _, d := range dls {
		if d.Reason == ReasonUnknownReceiver && (d.IntentID != "typo-1" || d.Description == "") {
			t.Errorf("unknown_receiver dead letter %+v", d.DeadLetter)
		}
	}
	if got := accept.requests(); got != 3 {
		t.Fatalf("%d pushes, want 3 (good-1 to each receiver)", got)
	}
}

// TestUnroutedTypeCountedAndLogged: an intent of a type no receiver asked
// for is counted by type and logged at most once a minute per type.
func TestUnroutedTypeCountedAndLogged(t *testing.T) {
	e := newEnv(t, 30*time.Second, "a", "b")
	accept := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	core, logs := observer.New(zapcore.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := New(Config{Concurrency: 4, FetchWait: 300 * time.Millisecond, Receivers: []Receiver{
		e.spec(e.js, "a", accept.endpoint(), typeRevoked),
		e.spec(e.js, "b", accept.endpoint(), typeCred),
	}}, Deps{JS: e.js, Log: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	defer stop()
	for i := range 5 {
		e.publish(testIntent(idN("purged", i), typePurged))
	}
	e.publish(testIntent("cred-1", typeCred))
	eventually(t, 10*time.Second, "every intent settled", func() bool { return e.intentsLeft() == 0 })
	if got := metricValueType(t, reg, "setrelay_intents_unrouted_total", typePurged); got != 5 {
		t.Fatalf("unrouted counter %v, want 5", got)
	}
	if got := metricValueType(t, reg, "setrelay_intents_unrouted_total", typeCred); got != 0 {
		t.Fatalf("a routed type counted as unrouted: %v", got)
	}
	if n := logs.FilterMessageSnippet("no receiver requested").Len(); n != 1 {
		t.Fatalf("%d log lines, want 1 (rate-limited per type)", n)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
}

func metricValueType(t *testing.T, reg *prometheus.Registry, name, typ string) float64 {
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
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "type" && lp.GetValue() == typ {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// runPool runs p until the returned stop is called (or the test ends).
func runPool(t *testing.T, p *Pool) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestUnknownReceiverAmongKnownIsCounted: an intent naming a configured
// receiver and a typo is delivered to the configured one, and the typo is
// counted once per intent (by the owner only, though every receiver sees
// the message) and logged once a minute per name.
func TestUnknownReceiverAmongKnownIsCounted(t *testing.T) {
	e := newEnv(t, 30*time.Second, "alpha", "beta", "gamma")
	accept := newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	core, logs := observer.New(zapcore.WarnLevel)
	reg := prometheus.NewRegistry()
	p, err := New(Config{Concurrency: 6, FetchWait: 300 * time.Millisecond, Receivers: []Receiver{
		e.spec(e.js, "alpha", accept.endpoint()),
		e.spec(e.js, "beta", accept.endpoint()),
		e.spec(e.js, "gamma", accept.endpoint()),
	}}, Deps{JS: e.js, Log: zap.New(core), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	stop := runPool(t, p)
	defer stop()
	for i := range 3 {
		// Named by beta (not the owner) and by gamma plus alpha (the
		// owner is among the addressees): both routes must count.
		in := sessionRevoked(idN("mixed", i))
		in.Receivers = []string{"beta", "btea"}
		if i == 2 {
			in.Receivers = []string{"alpha", "gamma", "btea"}
		}
		e.publish(in)
	}
	eventually(t, 10*time.Second, "every intent settled by every receiver", func() bool { return e.intentsLeft() == 0 })
	if got := accept.requests(); got != 4 {
		t.Fatalf("%d pushes, want 4 (beta twice, alpha and gamma once)", got)
	}
	if got := metricValueLabel(t, reg, "setrelay_intents_unknown_receiver_total", "receiver", "btea"); got != 3 {
		t.Fatalf("unknown receiver counter %v, want 3 (once per intent)", got)
	}
	if n := logs.FilterMessageSnippet("names a receiver that is not configured").Len(); n != 1 {
		t.Fatalf("%d log lines about btea, want 1 (rate-limited per name)", n)
	}
	if l := logs.FilterMessageSnippet("names a receiver that is not configured").All()[0]; l.ContextMap()["unknown_receiver"] != "btea" {
		t.Errorf("log line %v does not name btea", l.ContextMap())
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0: a known receiver was named", len(dls))
	}
}

func metricValueLabel(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
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
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
