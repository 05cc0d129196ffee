package worker

import (
	"context"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// TestOrderRules covers the partition owner's bookkeeping (order) alone:
// which intent may start, with retries away, pins, lost deliveries and
// giving a partition up.
func TestOrderRules(t *testing.T) {
	start := func(o *order) uint64 {
		t.Helper()
		e, seq := o.next()
		if e == nil {
			return 0
		}
		e.running = true
		return seq
	}
	o := newOrder()
	// Deliveries 5..9 under pin P: subjects a (seq 10, 12, 14) and b (11, 13).
	for i, s := range []struct {
		seq uint64
		key string
	}{{10, "a"}, {11, "b"}, {12, "a"}, {13, "b"}, {14, "a"}} {
		o.add(nil, s.seq, uint64(i+5), s.key, "P", time.Time{})
	}
	// Just pinned: nothing starts until reconcile says nothing earlier
	// is elsewhere.
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d before reconcile", seq)
	}
	o.reconcile(9, 3) // 9 pending, 5 here, delivery 4 unacked
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d while 4 intents may be pending elsewhere", seq)
	}
	o.reconcile(5, 0) // the count rule
	if a, b, none := start(o), start(o), start(o); a != 10 || b != 11 || none != 0 {
		t.Fatalf("started %d, %d, %d; want the heads 10 and 11, then nothing", a, b, none)
	}
	// a's head is retried (away): a's later intents wait for it, b goes on.
	o.done(10, true)
	o.done(11, false)
	if seq := start(o); seq != 13 {
		t.Fatalf("started %d, want b's 13 while a's head 10 is away", seq)
	}
	o.done(13, false)
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d while a's head is away", seq)
	}
	// 10 comes back (a new delivery, 10) and settles; then 12, then 14.
	o.add(nil, 10, 10, "a", "P", time.Time{})
	if seq := start(o); seq != 10 {
		t.Fatalf("started %d, want the returned head 10", seq)
	}
	o.done(10, false)
	if seq := start(o); seq != 12 {
		t.Fatalf("started %d, want 12", seq)
	}
	o.done(12, false)

	// A lost delivery (11 skipped): nothing starts until the count rule
	// holds; the floor rule does not apply after a gap.
	o.add(nil, 15, 12, "b", "P", time.Time{})
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d after a lost delivery", seq)
	}
	o.reconcile(3, 100)
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d: floor rule used after a gap", seq)
	}
	o.reconcile(2, 0) // 14 and 15 held
	if a, b := start(o), start(o); a != 14 || b != 15 {
		t.Fatalf("started %d, %d; want 14, 15", a, b)
	}
	o.done(14, true) // away
	o.done(15, false)

	// A new pin: what was handed back may have been settled by another
	// owner meanwhile, so it is forgotten; the floor rule lets the new
	// owner start once every earlier delivery is acked.
	o.add(nil, 16, 40, "a", "Q", time.Time{})
	if o.away != 0 || len(o.entries) != 1 {
		t.Fatalf("after a new pin: away %d, entries %d; want 0 and 1", o.away, len(o.entries))
	}
	o.reconcile(5, 38)
	if seq := start(o); seq != 0 {
		t.Fatalf("started %d while delivery 39 is unacked elsewhere", seq)
	}
	o.reconcile(5, 39)
	if seq := start(o); seq != 16 {
		t.Fatalf("started %d, want 16", seq)
	}

	// Heartbeats go to the waiting intents the server has not heard of
	// since a given time, once each.
	t0 := time.Unix(1000, 0)
	o.add(nil, 19, 41, "d", "Q", t0)
	o.add(nil, 20, 42, "e", "Q", t0.Add(time.Minute))
	if n := len(o.stale(t0.Add(time.Second), t0.Add(2*time.Minute))); n != 1 {
		t.Fatalf("%d intents to heartbeat, want the one delivered before the cut", n)
	}
	if n := len(o.stale(t0.Add(time.Second), t0.Add(2*time.Minute))); n != 0 {
		t.Fatalf("%d intents to heartbeat again at once, want 0", n)
	}
	o.release()
	o.add(nil, 16, 43, "a", "Q", time.Time{})
	o.reconcile(1, 42)
	start(o)

	// Giving the partition up returns the unstarted ones and forgets the
	// running one's outcome.
	o.add(nil, 17, 44, "a", "Q", time.Time{})
	o.add(nil, 18, 45, "c", "Q", time.Time{})
	back := o.release()
	if len(back) != 2 {
		t.Fatalf("release returned %d intents, want the 2 not started", len(back))
	}
	o.done(16, true)
	if len(o.entries) != 0 || o.held != 0 || o.away != 0 {
		t.Fatalf("after release and the orphan's outcome: %d entries, held %d, away %d", len(o.entries), o.held, o.away)
	}
}

// orderedEnv is an ordered receiver "r" with 8 partitions on a real
// JetStream, and a receiver that records each subject's txns in arrival
// order; fail decides, per txn and attempt, whether to answer 500.
type orderedEnv struct {
	*env
	mu    sync.Mutex
	got   map[string][]string // subject email -> txns
	tries map[string]int
	order []string // every accepted txn, in arrival order
	srv   *httptest.Server
	retry RetryPolicy
}

func newOrderedEnv(t *testing.T, ackWait time.Duration, fail func(txn string, attempt int) bool) *orderedEnv {
	return newSlowOrderedEnv(t, ackWait, 0, fail)
}

// newSlowOrderedEnv is newOrderedEnv with a receiver that takes delay to
// answer.
func newSlowOrderedEnv(t *testing.T, ackWait, delay time.Duration, fail func(txn string, attempt int) bool) *orderedEnv {
	t.Helper()
	e := &orderedEnv{env: newEnvQ(t, queue.Config{AckWait: ackWait, MaxDeliver: 100, Ordered: map[string]int{"r": 8}}, "r"),
		got: map[string][]string{}, tries: map[string]int{},
		retry: RetryPolicy{Initial: time.Second, Max: time.Second, MaxAttempts: 10, MaxAge: time.Hour}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body [1 << 14]byte
		n, _ := r.Body.Read(body[:])
		for n < len(body) {
			m, err := r.Body.Read(body[n:])
			n += m
			if err != nil {
				break
			}
		}
		time.Sleep(delay)
		claims := verifiedClaims(t, e.key, body[:n])
		txn, _ := claims["txn"].(string)
		e.mu.Lock()
		defer e.mu.Unlock()
		e.tries[txn]++
		if fail != nil && fail(txn, e.tries[txn]) {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		subj := txn[:strings.LastIndexByte(txn, '-')]
		e.got[subj] = append(e.got[subj], txn)
		e.order = append(e.order, txn)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// start runs a pool for "r" with its partition consumers, until the test
// ends or stop is called.
func (e *orderedEnv) start() (stop func()) { return e.startWith(nil) }

// startWith is start with the pool's metrics on reg (nil: a registry of
// its own).
func (e *orderedEnv) startWith(reg prometheus.Registerer) (stop func()) {
	spec := e.spec(e.js, "r", e.srv.URL+"/events")
	spec.Retry = e.retry
	for p := range 8 {
		c, err := e.js.Consumer(context.Background(), queue.IntentStream, queue.PartitionConsumerName("r", p))
		if err != nil {
			e.t.Fatal(err)
		}
		spec.Partitions = append(spec.Partitions, c)
	}
	return e.run(Config{Concurrency: 8, Receivers: []Receiver{spec}, GracePeriod: 5 * time.Second}, e.js, reg)
}

// publishTxn publishes an intent about email with txn "<email>-<k>".
func (e *orderedEnv) publishTxn(email string, k int) {
	e.t.Helper()
	txn := fmt.Sprintf("%s-%d", email, k)
	e.publish(&intent.Intent{ID: "id-" + txn, Type: typeRevoked, Txn: txn, Subject: map[string]any{"format": "email", "email": email}})
}

func (e *orderedEnv) delivered(email string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.got[email])
}

func (e *orderedEnv) arrivals() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.order)
}

// partitionOf is the partition of 8 an email subject falls in.
func partitionOf(email string) int {
	return queue.SubjectSlot(map[string]any{"format": "email", "email": email}) % 8
}

// samePartition finds two emails of the same partition.
func samePartition() (string, string) {
	first := map[int]string{}
	for i := 0; ; i++ {
		email := fmt.Sprintf("u%d@example.com", i)
		if other, ok := first[partitionOf(email)]; ok {
			return other, email
		}
		first[partitionOf(email)] = email
	}
}

// TestOrderedRetryParksOnlyItsSubject: a subject's head fails once and is
// retried after a second (handed back to the server meanwhile). Its later
// intent waits for it; another subject of the same partition, published
// after both, is delivered meanwhile.
func TestOrderedRetryParksOnlyItsSubject(t *testing.T) {
	a, b := samePartition()
	e := newOrderedEnv(t, 5*time.Second, func(txn string, attempt int) bool { return txn == a+"-0" && attempt == 1 })
	e.publishTxn(a, 0)
	e.publishTxn(a, 1)
	e.publishTxn(b, 0)
	e.start()
	eventually(t, 20*time.Second, "both subjects delivered", func() bool {
		return len(e.delivered(a)) == 2 && len(e.delivered(b)) == 1
	})
	if got := e.delivered(a); got[0] != a+"-0" || got[1] != a+"-1" {
		t.Fatalf("subject a delivered %v, want its head first", got)
	}
	if got := e.arrivals(); got[0] != b+"-0" {
		t.Errorf("arrivals %v: the other subject of the partition waited for a's retry", got)
	}
}

// TestOrderedTakeover: a process pinned to a partition received a
// subject's first intent and died without settling it. When the
// partition is pinned to the pool, the subject's later intents reach it at
// once, but the first comes back only when its AckWait runs out: the pool
// must not deliver the later ones before it.
func TestOrderedTakeover(t *testing.T) {
	const email = "taken@example.com"
	e := newOrderedEnv(t, 2*time.Second, nil)
	for k := range 3 {
		e.publishTxn(email, k)
	}
	ctx := context.Background()
	name := queue.PartitionConsumerName("r", partitionOf(email))
	// The "dead" owner, on its own connection: pinned, one intent taken.
	djs, err := jetstream.New(e.connect())
	if err != nil {
		t.Fatal(err)
	}
	dead, err := djs.Consumer(ctx, queue.IntentStream, name)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := dead.Fetch(1, jetstream.FetchMaxWait(2*time.Second), jetstream.FetchPriorityGroup(queue.PartitionGroup))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range batch.Messages() {
		n++
	}
	if n != 1 {
		t.Fatalf("the dead owner got %d intents, want 1 (%v)", n, batch.Error())
	}
	// It stopped pulling; the server unpins it (after PinnedTTL; here at
	// once, by the API an operator would use).
	s, err := e.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.UnpinConsumer(ctx, name, queue.PartitionGroup); err != nil {
		t.Fatal(err)
	}
	e.start()
	eventually(t, 20*time.Second, "the subject delivered", func() bool { return len(e.delivered(email)) >= 3 })
	want := []string{email + "-0", email + "-1", email + "-2"}
	if got := e.delivered(email); !slices.Equal(got[:3], want) {
		t.Fatalf("delivered %v, want %v: a later intent overtook the dead owner's", got, want)
	}
}

// TestOrderedShutdownHandsBack: a process shut down while it holds a
// subject's later intents hands them back (and unpins the partition); the
// next process delivers the rest of the subject in order, nothing lost.
func TestOrderedShutdownHandsBack(t *testing.T) {
	const email, n = "stop@example.com", 8
	e := newSlowOrderedEnv(t, 5*time.Second, 150*time.Millisecond, nil)
	for k := range n {
		e.publishTxn(email, k)
	}
	stop := e.start()
	eventually(t, 20*time.Second, "the first intents delivered", func() bool { return len(e.delivered(email)) >= 2 })
	stop()
	if got := len(e.delivered(email)); got >= n {
		t.Fatalf("the first process delivered all %d before it stopped; nothing was handed back", got)
	}
	e.start()
	eventually(t, 30*time.Second, "the rest delivered by the next process", func() bool { return len(e.delivered(email)) >= n })
	got := slices.Compact(e.delivered(email)) // a redelivery of an accepted SET is allowed
	want := make([]string, n)
	for k := range n {
		want[k] = fmt.Sprintf("%s-%d", email, k)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("delivered %v, want %v", got, want)
	}
}

// TestOrderedStuckHeadFillsTheWindow: a subject whose head keeps failing
// holds at most a window of its partition's intents (the memory bound);
// once its later intents fill the window, the partition's other subjects
// wait too, until the head is dead-lettered; then everything is delivered
// in order.
func TestOrderedStuckHeadFillsTheWindow(t *testing.T) {
	a, b := samePartition()
	e := newOrderedEnv(t, 5*time.Second, func(txn string, attempt int) bool { return txn == a+"-0" })
	e.retry = RetryPolicy{Initial: 300 * time.Millisecond, Max: 300 * time.Millisecond, MaxAttempts: 6, MaxAge: time.Hour}
	const behind = queue.PartitionMaxAckPending + 4
	for k := range behind + 1 {
		e.publishTxn(a, k)
	}
	e.publishTxn(b, 0)
	e.start()
	cons, err := e.js.Consumer(context.Background(), queue.IntentStream, queue.PartitionConsumerName("r", partitionOf(a)))
	if err != nil {
		t.Fatal(err)
	}
	maxPending := 0
	eventually(t, 30*time.Second, "everything delivered after the head's dead letter", func() bool {
		if info, err := cons.Info(context.Background()); err == nil {
			maxPending = max(maxPending, info.NumAckPending)
		}
		return len(e.delivered(a)) == behind && len(e.delivered(b)) == 1
	})
	if maxPending > queue.PartitionMaxAckPending {
		t.Errorf("%d intents of the partition in flight, want at most %d", maxPending, queue.PartitionMaxAckPending)
	}
	if dls := e.deadLetters(); len(dls) != 1 || dls[0].IntentID != "id-"+a+"-0" {
		t.Fatalf("dead letters %+v, want the head only", dls)
	}
	// b's intent was stored after the window filled with a's, so it came
	// only after the head's dead letter released the partition, and a's
	// later intents kept their order.
	want := make([]string, behind)
	for k := range behind {
		want[k] = fmt.Sprintf("%s-%d", a, k+1)
	}
	if got := e.delivered(a); !slices.Equal(got, want) {
		t.Errorf("subject a delivered %v, want %v", got, want)
	}
	arr := e.arrivals()
	if slices.Index(arr, b+"-0") < slices.Index(arr, a+"-1") {
		t.Errorf("arrivals %v: the other subject got past a full window", arr)
	}
}

// TestOrderedReceiverGetsOlderProducersIntents: producers not yet upgraded
// publish on the bare "setrelay.intent" (before per-subject ordering) or on
// the first slot layout "setrelay.intent.<slot>". An ordered receiver's
// partitions do not take those; its own consumer does, so they are
// delivered (without an order guarantee) along with the current layout's.
func TestOrderedReceiverGetsOlderProducersIntents(t *testing.T) {
	e := newOrderedEnv(t, 5*time.Second, nil)
	e.start()
	old := func(subject, email string) {
		t.Helper()
		txn := email + "-0"
		data, err := queue.Encode(&intent.Intent{ID: "id-" + txn, Type: typeRevoked, Txn: txn,
			Subject: map[string]any{"format": "email", "email": email}}, intent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.Publish(context.Background(), subject, data); err != nil {
			t.Fatalf("publish on %s: %v", subject, err)
		}
	}
	slot := queue.SubjectSlot(map[string]any{"format": "email", "email": "first-layout@example.com"})
	old(fmt.Sprintf("setrelay.intent.%d", slot), "first-layout@example.com")
	old(queue.IntentSubject, "bare@example.com")
	e.publishTxn("current@example.com", 0)
	eventually(t, 20*time.Second, "every layout's intent delivered", func() bool {
		return len(e.delivered("first-layout@example.com")) == 1 && len(e.delivered("bare@example.com")) == 1 &&
			len(e.delivered("current@example.com")) == 1
	})
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("dead letters: %+v", dls)
	}
}
