package relay

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// orderSink is a receiver that records, per subject, the order in which it
// accepted SETs (by their txn "s<subject>-<index>"). It rejects the SETs
// listed in reject permanently (400 invalid_request) and answers 500 to
// the first failFirst attempts of those in flaky.
type orderSink struct {
	t      *testing.T
	mu     sync.Mutex
	order  map[int][]int
	reject map[string]bool
	flaky  map[string]int
	got    chan struct{}
	// accept turns the rejections off (the receiver was fixed).
	accept atomic.Bool
}

func newOrderSink(t *testing.T, reject ...string) (*orderSink, *httptest.Server) {
	o := &orderSink{t: t, order: map[int][]int{}, reject: map[string]bool{}, flaky: map[string]int{}, got: make(chan struct{}, 10000)}
	for _, r := range reject {
		o.reject[r] = true
	}
	srv := httptest.NewServer(o)
	t.Cleanup(srv.Close)
	return o, srv
}

// ServeHTTP records or rejects one SET.
func (o *orderSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := o.t
	b, _ := io.ReadAll(r.Body)
	txn, _ := jwtClaims(t, string(b))["txn"].(string)
	var s, k int
	if _, err := fmt.Sscanf(txn, "s%d-%d", &s, &k); err != nil {
		t.Errorf("txn %q: %v", txn, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.reject[txn] && !o.accept.Load() {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"err":"invalid_request","description":"rejected by the test"}`))
		return
	}
	if o.flaky[txn] > 0 {
		o.flaky[txn]--
		http.Error(w, "flaky", http.StatusInternalServerError)
		return
	}
	o.order[s] = append(o.order[s], k)
	w.WriteHeader(http.StatusAccepted)
	o.got <- struct{}{}
}

func (o *orderSink) delivered(s int) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.order[s]...)
}

// TestOrderedPermanentHeadRejected shows per-subject head-of-line blocking
// with both on_dead_letter settings: the head intent of subject 0 is
// rejected permanently, subject 1's head fails three times before it is
// accepted, and every other subject is delivered completely and in order.
// With continue, subject 0's later intents follow in order; with hold they
// are dead-lettered as subject_held until the dead letters are replayed
// (in order, then newer intents) or purged.
func TestOrderedPermanentHeadRejected(t *testing.T) {
	for _, mode := range []string{config.DeadLetterContinue, config.DeadLetterHold} {
		t.Run(mode, func(t *testing.T) { testOrderedHead(t, mode) })
	}
}

func testOrderedHead(t *testing.T, mode string) {
	const subjects, perSubject = 24, 8
	sink, srv := newOrderSink(t, "s0-0", "s2-0")
	sink.flaky["s1-0"] = 3
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: srv.URL + "/events", Concurrency: 16})
	cfg := rc.Config
	r := &cfg.Receivers[0]
	r.Ordering, r.Partitions, r.OnDeadLetter = config.OrderingSubject, 8, mode
	r.Retry = config.Retry{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond, MaxAttempts: 10, MaxAge: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	js, reg := runOrderedRelay(t, cfg)
	ctx := t.Context()
	pub := queue.NewPublisher(js, intent.Options{})
	publish := func(s, k int) {
		t.Helper()
		in := &intent.Intent{ID: fmt.Sprintf("o-%d-%d", s, k), Type: "risc.account-disabled", Txn: fmt.Sprintf("s%d-%d", s, k),
			Subject: map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", s)}}
		if _, err := pub.Publish(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	for k := range perSubject {
		for s := range subjects {
			publish(s, k)
		}
	}

	// Every subject but 0 and 2 (whose heads are rejected) is complete
	// and in order, subject 1 despite its head's three failures.
	waitUntil(t, 30*time.Second, "every other subject delivered", func() bool {
		for s := 1; s < subjects; s++ {
			if s != 2 && len(sink.delivered(s)) < perSubject {
				return false
			}
		}
		return true
	})
	inOrder := func(s int, want []int) {
		t.Helper()
		if got := sink.delivered(s); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("subject %d delivered %v, want %v", s, got, want)
		}
	}
	seq := func(from, to int) []int {
		var out []int
		for k := from; k < to; k++ {
			out = append(out, k)
		}
		return out
	}
	for s := 1; s < subjects; s++ {
		if s != 2 {
			inOrder(s, seq(0, perSubject))
		}
	}
	dlq := queue.NewDLQ(js)
	heads := func() []queue.StoredDeadLetter {
		t.Helper()
		list, err := dlq.List(ctx, queue.Filter{Receiver: r.Name})
		if err != nil {
			t.Fatal(err)
		}
		return list
	}

	if mode == config.DeadLetterContinue {
		waitUntil(t, 20*time.Second, "subjects 0 and 2 delivered after their heads", func() bool {
			return len(sink.delivered(0)) == perSubject-1 && len(sink.delivered(2)) == perSubject-1
		})
		inOrder(0, seq(1, perSubject))
		inOrder(2, seq(1, perSubject))
		if l := heads(); len(l) != 2 || l[0].Reason != "invalid_request" || l[1].Reason != "invalid_request" {
			t.Fatalf("dead letters %+v, want the two heads (invalid_request)", l)
		}
		return
	}

	// hold: the heads and everything after them about subjects 0 and 2
	// are dead letters, in order; nothing of theirs was delivered.
	waitUntil(t, 20*time.Second, "subjects 0 and 2 held", func() bool { return len(heads()) == 2*perSubject })
	inOrder(0, nil)
	inOrder(2, nil)
	perSubj := map[string][]queue.StoredDeadLetter{}
	for _, dl := range heads() {
		perSubj[dl.IntentID[:strings.LastIndex(dl.IntentID, "-")]] = append(perSubj[dl.IntentID[:strings.LastIndex(dl.IntentID, "-")]], dl)
	}
	for _, s := range []string{"o-0", "o-2"} {
		for k, dl := range perSubj[s] {
			want := queue.ReasonSubjectHeld
			if k == 0 {
				want = "invalid_request"
			}
			if dl.IntentID != fmt.Sprintf("%s-%d", s, k) || dl.Reason != want {
				t.Errorf("dead letter %d of %s: %s %s, want %s-%d %s", k, s, dl.IntentID, dl.Reason, s, k, want)
			}
		}
	}
	if got := testutil.ToFloat64(mustCounter(t, reg, "setrelay_dead_letters_total", map[string]string{"receiver": r.Name, "reason": queue.ReasonSubjectHeld})); got != 2*(perSubject-1) {
		t.Errorf("setrelay_dead_letters_total{reason=subject_held} = %v, want %d", got, 2*(perSubject-1))
	}
	holds, err := queue.OpenHolds(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	key0 := intent.SubjectKey(map[string]any{"format": "email", "email": "user0@example.com"})
	if h, held, err := holds.Get(ctx, r.Name, key0); err != nil || !held || len(h.DeadLetters) != perSubject {
		t.Fatalf("hold of subject 0: %+v held=%v err=%v", h, held, err)
	}

	waitUntil(t, 20*time.Second, "setrelay_held_subjects 2", func() bool {
		return testutil.ToFloat64(mustGauge(t, reg, "setrelay_held_subjects", map[string]string{"receiver": r.Name})) == 2
	})

	// A newer intent about a held subject is held too.
	publish(0, perSubject)
	waitUntil(t, 10*time.Second, "the newer intent held", func() bool { return len(heads()) == 2*perSubject+1 })

	// The receiver is fixed; replaying subject 0's dead letters in order
	// delivers them in order, ends the hold, and newer intents follow.
	sink.accept.Store(true)
	for _, dl := range heads() {
		if strings.HasPrefix(dl.IntentID, "o-0-") {
			if _, err := dlq.Replay(ctx, dl.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitUntil(t, 20*time.Second, "subject 0 replayed", func() bool { return len(sink.delivered(0)) == perSubject+1 })
	inOrder(0, seq(0, perSubject+1))
	if _, held, err := holds.Get(ctx, r.Name, key0); err != nil || held {
		t.Errorf("subject 0 still held after its replays (err %v)", err)
	}
	publish(0, perSubject+1)
	waitUntil(t, 10*time.Second, "a newer intent after the hold", func() bool { return len(sink.delivered(0)) == perSubject+2 })

	// Purging subject 2's dead letters ends its hold: newer intents are
	// delivered again.
	if n, err := dlq.Purge(ctx, queue.Filter{Receiver: r.Name}); err != nil || n != perSubject {
		t.Fatalf("purge: %d, %v; want subject 2's %d dead letters", n, err, perSubject)
	}
	publish(2, perSubject)
	waitUntil(t, 10*time.Second, "subject 2 delivered after the purge", func() bool { return len(sink.delivered(2)) == 1 })
	inOrder(2, []int{perSubject})
}

func mustGauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	return mustCounter(t, reg, name, labels)
}

// mustCounter is the named counter's (or gauge's) child with labels, as a
// collector testutil can read; a missing one reads 0.
func mustCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			v := m.GetCounter().GetValue()
			if m.GetGauge() != nil {
				v = m.GetGauge().GetValue()
			}
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name}, func() float64 { return v })
		}
	}
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name}, func() float64 { return 0 })
}

// TestOrderedThroughOutage: an ordered receiver that is down long enough to
// be paused (its partitions stop pulling, held intents are handed back and
// stay pending) gets every subject's SETs in order once it is back.
func TestOrderedThroughOutage(t *testing.T) {
	const subjects, perSubject = 16, 10
	var down atomic.Bool
	down.Store(true)
	sink, srv := newOrderSink(t)
	outage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		sink.ServeHTTP(w, r)
	}))
	t.Cleanup(outage.Close)
	_ = srv
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: outage.URL + "/events", Concurrency: 16})
	cfg := rc.Config
	r := &cfg.Receivers[0]
	r.Ordering, r.Partitions = config.OrderingSubject, 8
	r.Retry = config.Retry{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond, MaxAttempts: 60, MaxAge: time.Hour}
	r.Pause = config.Pause{Threshold: 3, Initial: time.Second, Max: 2 * time.Second, ProbeInterval: 300 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	js, reg := runOrderedRelay(t, cfg)
	ctx := t.Context()
	pub := queue.NewPublisher(js, intent.Options{})
	for k := range perSubject {
		for s := range subjects {
			in := &intent.Intent{ID: fmt.Sprintf("out-%d-%d", s, k), Type: "risc.account-disabled", Txn: fmt.Sprintf("s%d-%d", s, k),
				Subject: map[string]any{"format": "opaque", "id": fmt.Sprintf("acct-%d", s)}}
			if _, err := pub.Publish(ctx, in); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitUntil(t, 20*time.Second, "the receiver paused", func() bool {
		return testutil.ToFloat64(mustCounter(t, reg, "setrelay_pauses_total", map[string]string{"receiver": r.Name})) > 0
	})
	down.Store(false)
	waitUntil(t, 40*time.Second, "every SET delivered", func() bool {
		for s := range subjects {
			if len(sink.delivered(s)) < perSubject {
				return false
			}
		}
		return true
	})
	for s := range subjects {
		got := sink.delivered(s)
		for k := range perSubject {
			if got[k] != k {
				t.Fatalf("subject %d delivered %v, want 0..%d in order", s, got, perSubject-1)
			}
		}
	}
	if n := testenv.StreamMsgs(t, js, queue.DLQStream); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
}

// runOrderedRelay starts a relay on cfg, runs it until the test ends (a
// Run error fails the test), and returns a JetStream client of its
// embedded server and its metrics registry.
func runOrderedRelay(t *testing.T, cfg *config.Config) (jetstream.JetStream, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	nc, err := nats.Connect(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, reg
}
