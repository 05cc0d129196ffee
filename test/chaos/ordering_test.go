package chaos

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// The ordering run's size. The defaults are the CI-sized run that
// `go test ./...` does; scripts/chaos-ordering.sh passes the full size
// (20,000 intents over 500 subjects, 256 partitions).
var (
	flagOrderIntents    = flag.Int("order-intents", 2000, "ordering: intents to publish")
	flagOrderSubjects   = flag.Int("order-subjects", 100, "ordering: distinct subjects the intents are about")
	flagOrderPartitions = flag.Int("order-partitions", 64, "ordering: the receiver's partitions")
	flagOrderDuration   = flag.Duration("order-duration", 20*time.Second, "ordering: how long publishing (and the kills) last")
	flagOrderDrain      = flag.Duration("order-drain", 60*time.Second, "ordering: how long to wait for every intent after publishing")
	flagOrderMode       = flag.String("order-mode", "subject", "ordering: the receiver's ordering; none shows the check failing (out-of-order deliveries)")
)

// TestOrderingChaos is issue 16's proof: a receiver with ordering: subject,
// three `setrelay run` processes SIGKILLed at random on a 3-node
// nats-server cluster, and a receiver that fails 10 % with 500, 2 % with
// 429 and hangs 2 %. The receiver records the order in which it accepted
// each subject's SETs: none may arrive after a newer one about the same
// subject (a redelivery of one already accepted may), and none may be
// missing.
func TestOrderingChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("ordering chaos run (3 nats-server + 3 setrelay processes, ~60 s); skipped with -short")
	}
	bin := *flagBin
	if bin == "" {
		bin = setrelayBinary(t)
	}
	if missing := missingCommands(bin, "run", "provision"); len(missing) > 0 {
		t.Fatalf("ordering: %s has no working %s command", bin, strings.Join(missing, ", "))
	}
	seed := *flagSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	dir := *flagLogDir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(seed, 0x0d3))
	t.Logf("ordering: seed=%d intents=%d subjects=%d partitions=%d logs=%s", seed, *flagOrderIntents, *flagOrderSubjects, *flagOrderPartitions, dir)

	cluster := startCluster(t, dir, 3)
	_, js := cluster.connect(t)

	key, err := signer.GenerateKey(jose.ES256, "order-1")
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := key.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "order-1.pem")
	if err := os.WriteFile(keyPath, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	pub, ok := key.PublicJWK().Key.(*ecdsa.PublicKey)
	if !ok {
		t.Fatalf("public key is %T", key.PublicJWK().Key)
	}

	rec := newOrderReceiver(t, pub, seed)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)

	cfgPath := filepath.Join(dir, "setrelay.yaml")
	cfg := fmt.Sprintf(`issuer: https://order.setrelay.test/
nats:
  url: %s
  replicas: 3
  ack_wait: %s
keys:
  - id: order-1
    file: %s
    alg: ES256
worker:
  concurrency: 64
  grace_period: %s
ops:
  listen: 127.0.0.1:0
log:
  level: warn
  format: json
receivers:
  - name: ordered
    endpoint: %s/events
    audience: https://receiver.order.test/
    key: order-1
    subject: sub_id
    insecure_http: true
    timeout: %s
    %s
    retry: {initial: 100ms, max: 1s, max_attempts: 60, max_age: 1h}
    pause: {threshold: -1}
`, cluster.URLs(), ackWait, keyPath, gracePeriod, srv.URL, pushTimeout, orderingYAML())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prov := newProc("provision", bin, dir, nil, "provision", "--config", cfgPath)
	prov.start(t)
	if exited, err := prov.wait(90 * time.Second); !exited || err != nil {
		prov.kill(t)
		t.Fatalf("setrelay provision: exited=%v err=%v\n%s", exited, err, tail(prov.logFiles()))
	}
	var workers []*proc
	for i := range 3 {
		w := newProc(fmt.Sprintf("oworker-%d", i+1), bin, dir, nil, "run", "--config", cfgPath)
		w.start(t)
		workers = append(workers, w)
	}
	t.Cleanup(func() {
		for _, w := range workers {
			w.kill(t)
		}
	})

	// Publish with the library producers use, one at a time: each
	// subject's intents are stored in the order of their index k.
	n, subjects := *flagOrderIntents, *flagOrderSubjects
	want := make([]int, subjects) // intents per subject
	started := time.Now()
	pubDone := make(chan error, 1)
	go func() {
		p := queue.NewPublisher(js, intent.Options{})
		interval := *flagOrderDuration / time.Duration(n)
		prng := mrand.New(mrand.NewPCG(seed, 0x9b))
		next := time.Now()
		for i := range n {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			s := prng.IntN(subjects)
			in := orderIntent(i, s, want[s])
			want[s]++
			deadline := time.Now().Add(60 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, err := p.Publish(ctx, in)
				cancel()
				if err == nil {
					break
				}
				var verr *intent.ValidationError
				if errors.As(err, &verr) || time.Now().After(deadline) {
					pubDone <- fmt.Errorf("intent %s not stored: %w", in.ID, err)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		pubDone <- nil
	}()

	kills := 0
	killEvery := 3 * time.Second
	nextKill := time.Now().Add(killEvery)
	var pubErr error
	for published := false; !published; {
		select {
		case pubErr = <-pubDone:
			published = true
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(nextKill) {
			w := workers[rng.IntN(len(workers))]
			if w.running() {
				w.kill(t)
				kills++
				time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
				w.start(t)
			}
			nextKill = time.Now().Add(time.Duration(float64(killEvery) * (0.5 + rng.Float64())))
		}
	}
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	publishedIn := time.Since(started)

	deadline := time.Now().Add(*flagOrderDrain)
	for time.Now().Before(deadline) && rec.missing(want) > 0 {
		time.Sleep(250 * time.Millisecond)
	}
	drainedIn := time.Since(started)
	for _, w := range workers {
		_ = w.stop(t, 10*time.Second)
	}

	outOfOrder, dups, accepted := rec.verdict()
	lost := rec.missing(want)
	dlq := streamMsgs(t, js, queue.DLQStream)
	t.Logf("ordering: intents=%d subjects=%d partitions=%d accepted=%d redeliveries=%d out_of_order=%d lost=%d dead_letters=%d worker_kills=%d faults=%v published_in=%v drained_in=%v",
		n, subjects, *flagOrderPartitions, accepted, dups, outOfOrder, lost, dlq, kills, rec.faultCounts(), publishedIn.Round(time.Second), drainedIn.Round(time.Second))
	if kills == 0 {
		t.Error("no worker was killed: the run proved nothing about kills")
	}
	if rec.faultCounts()["hang"] == 0 || rec.faultCounts()["500"] == 0 || rec.faultCounts()["429"] == 0 {
		t.Errorf("the receiver did not inject every fault: %v", rec.faultCounts())
	}
	if outOfOrder > 0 {
		t.Errorf("%d SETs arrived after a newer SET about the same subject; first: %s", outOfOrder, rec.firstViolation)
	}
	if lost > 0 {
		t.Errorf("%d intents were never accepted (dead letters: %d)\n%s", lost, dlq, tail(workers[0].logFiles()))
	}
	if dlq > 0 {
		t.Errorf("%d dead letters; none expected (max_attempts 60 against 14 %% failures)", dlq)
	}
}

func orderingYAML() string {
	if *flagOrderMode == "none" {
		return "ordering: none"
	}
	return fmt.Sprintf("ordering: subject\n    partitions: %d", *flagOrderPartitions)
}

// orderIntent is intent i, the k-th about subject s. Even subjects are
// emails; odd ones are complex subjects (user and tenant).
func orderIntent(i, s, k int) *intent.Intent {
	in := &intent.Intent{
		ID:   fmt.Sprintf("ord-%06d", i),
		Type: "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
		Txn:  fmt.Sprintf("o-%d-%d", s, k),
	}
	if s%2 == 0 {
		in.Subject = map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", s)}
	} else {
		in.Subject = map[string]any{
			"format": "complex",
			"user":   map[string]any{"format": "opaque", "id": fmt.Sprintf("u%d", s)},
			"tenant": map[string]any{"format": "opaque", "id": "t1"},
		}
	}
	return in
}

// orderReceiver is the RFC 8935 receiver of the ordering run: it verifies
// each SET's signature, injects faults, and records per subject the order
// in which it accepted the SETs' indices.
type orderReceiver struct {
	t   *testing.T
	pub *ecdsa.PublicKey

	mu             sync.Mutex
	rng            *mrand.Rand
	seen           map[int]map[int]bool // subject -> indices accepted
	maxK           map[int]int          // subject -> highest index accepted
	outOfOrder     int
	dups           int
	accepted       int
	faults         map[string]int
	firstViolation string
}

func newOrderReceiver(t *testing.T, pub *ecdsa.PublicKey, seed uint64) *orderReceiver {
	return &orderReceiver{t: t, pub: pub, rng: mrand.New(mrand.NewPCG(seed, 0xfa)),
		seen: map[int]map[int]bool{}, maxK: map[int]int{}, faults: map[string]int{}}
}

func (o *orderReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(string(body), claims, func(*jwt.Token) (any, error) { return o.pub, nil },
		jwt.WithValidMethods([]string{"ES256"}))
	if err != nil {
		o.t.Errorf("receiver: SET does not verify: %v", err)
		http.Error(w, `{"err":"invalid_request","description":"bad signature"}`, http.StatusBadRequest)
		return
	}
	txn, _ := claims["txn"].(string)
	var s, k int
	if _, err := fmt.Sscanf(txn, "o-%d-%d", &s, &k); err != nil {
		o.t.Errorf("receiver: txn %q: %v", txn, err)
		http.Error(w, `{"err":"invalid_request","description":"txn"}`, http.StatusBadRequest)
		return
	}

	o.mu.Lock()
	roll := o.rng.Float64()
	switch {
	case roll < 0.10:
		o.faults["500"]++
		o.mu.Unlock()
		http.Error(w, "injected", http.StatusInternalServerError)
		return
	case roll < 0.12:
		o.faults["429"]++
		o.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case roll < 0.14:
		o.faults["hang"]++
		o.mu.Unlock()
		// Hang past the push timeout; the worker gives up and retries.
		select {
		case <-r.Context().Done():
		case <-time.After(2 * pushTimeout):
		}
		http.Error(w, "hung", http.StatusServiceUnavailable)
		return
	}
	// Accepted: record the order before answering, under the lock, so the
	// recorded order is the order of acceptance.
	if o.seen[s] == nil {
		o.seen[s] = map[int]bool{}
	}
	switch {
	case o.seen[s][k]:
		o.dups++ // a redelivery of a SET already accepted: allowed
	case len(o.seen[s]) > 0 && k < o.maxK[s]:
		o.outOfOrder++
		if o.firstViolation == "" {
			o.firstViolation = fmt.Sprintf("subject %d: index %d accepted after index %d", s, k, o.maxK[s])
		}
	}
	if len(o.seen[s]) == 0 || k > o.maxK[s] {
		o.maxK[s] = k
	}
	o.seen[s][k] = true
	o.accepted++
	o.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// missing counts the intents (want[s] per subject) never accepted.
func (o *orderReceiver) missing(want []int) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for s, c := range want {
		for k := range c {
			if !o.seen[s][k] {
				n++
			}
		}
	}
	return n
}

func (o *orderReceiver) verdict() (outOfOrder, dups, accepted int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outOfOrder, o.dups, o.accepted
}

func (o *orderReceiver) faultCounts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.faults))
	for k, v := range o.faults {
		out[k] = v
	}
	return out
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, name)
	if err != nil {
		t.Errorf("stream %s: %v", name, err)
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Errorf("stream %s info: %v", name, err)
		return 0
	}
	return info.State.Msgs
}
