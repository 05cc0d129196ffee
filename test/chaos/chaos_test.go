package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// The run's size. The defaults are the CI-sized run that `go test ./...`
// does; scripts/chaos.sh passes the full size
// (-args -intents 20000 -duration 3m).
var (
	flagIntents   = flag.Int("intents", 2000, "chaos: intents to publish")
	flagDuration  = flag.Duration("duration", 60*time.Second, "chaos: how long publishing (and the chaos) lasts")
	flagRate      = flag.Float64("rate", 0, "chaos: intents per second; 0 spreads -intents over -duration")
	flagWorkers   = flag.Int("workers", 3, "chaos: setrelay run processes")
	flagKillEvery = flag.Duration("kill-every", 0, "chaos: SIGKILL a worker this often; 0 picks duration/20 within 3s..6s")
	flagSeed      = flag.Uint64("seed", 0, "chaos: seed for the receiver's faults and the kill schedule; 0 picks one")
	flagLogDir    = flag.String("logdir", "", "chaos: keep every process's logs here instead of a temporary directory")
	flagAttempts  = flag.Int("max-attempts", 40, "chaos: the receiver's retry.max_attempts; below the consumer's MaxDeliver (100). A small value shows the checks failing")
	flagBin       = flag.String("setrelay", "", "chaos: test this setrelay binary instead of building ./cmd/setrelay")
)

const (
	chaosReceiver = "chaos"
	// rejectPrefix is the txn prefix the receiver answers with 400
	// invalid_request: the designed permanent failures.
	rejectPrefix = "reject-"
	// rejectEvery makes 0.5 % of intents designed rejections.
	rejectEvery = 200
	// Worker timing, short so a CI-sized run exercises every path in about a
	// minute: a killed worker's messages come back after ackWait; a hung push
	// is abandoned after pushTimeout.
	ackWait     = 5 * time.Second
	pushTimeout = 2 * time.Second
	gracePeriod = 5 * time.Second
	// The consumer pauses after pauseThreshold consecutive retryable
	// failures; the receiver outage lasts outageFor, well beyond that.
	pauseThreshold = 10
	outageFor      = 8 * time.Second
	tokenLifetime  = 15 * time.Second
	revokeEvery    = 1000
)

// TestChaos is issue 7's proof: real processes, real kills, and at the end
// every intent accounted for. See the package comment and scripts/chaos.sh.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run (3 nats-server + setrelay processes, ~90 s); skipped with -short")
	}
	bin := *flagBin
	if bin == "" {
		bin = setrelayBinary(t)
	}
	// A binary without these commands is a broken build, not a reason to
	// skip: a skip here would pass CI without running the proof.
	if missing := missingCommands(bin, "run", "provision", "receiver"); len(missing) > 0 {
		t.Fatalf("chaos: %s has no working %s command; the run needs `setrelay run`, `setrelay provision` and `setrelay receiver`", bin, strings.Join(missing, ", "))
	}
	r := newRun(t, bin)
	r.setUp()
	r.publishWithChaos()
	r.drain()
	r.stopWorkers()
	r.check()
}

// run is one chaos run: its processes, its schedule and what it observed.
type run struct {
	t        *testing.T
	bin      string
	dir      string
	seed     uint64
	rng      *mrand.Rand
	intents  int
	duration time.Duration
	rate     float64

	cluster     *natsCluster
	js          jetstream.JetStream
	key         *signer.Key
	keyPEM      []byte
	secret      string
	receiverURL string
	receiver    *proc
	workers     []*proc
	readyURLs   []string // each worker's /readyz, by index in workers
	configPath  string

	goodIDs   []string
	rejectIDs []string

	started       time.Time
	workerKills   int
	sigterms      int
	sigtermErr    error
	publishErrors atomic.Int64
	pausedSeen    atomic.Bool
	drainedIn     time.Duration

	// degraded configures the run for TestDegradedReceiverNotPaused: no
	// outage, concurrency 64 and the default pause settings.
	degraded bool
}

func newRun(t *testing.T, bin string) *run {
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
	rate := *flagRate
	if rate <= 0 {
		rate = float64(*flagIntents) / flagDuration.Seconds()
	}
	r := &run{
		t: t, bin: bin, dir: dir, seed: seed,
		rng:     mrand.New(mrand.NewPCG(seed, 0x5e7)),
		intents: *flagIntents, duration: *flagDuration, rate: rate,
	}
	t.Logf("chaos: seed=%d intents=%d duration=%v rate=%.1f/s workers=%d logs=%s", seed, r.intents, r.duration, rate, *flagWorkers, dir)
	return r
}

// setUp starts the cluster, the receiver, provisioning and the workers.
func (r *run) setUp() {
	t := r.t
	r.cluster = startCluster(t, r.dir, 3)
	_, r.js = r.cluster.connect(t)

	// A fresh ES256 key; the receiver verifies with its JWKS, served by the
	// test so that it stays up while workers are killed.
	key, err := signer.GenerateKey(jose.ES256, "chaos-1")
	if err != nil {
		t.Fatal(err)
	}
	r.key = key
	if r.keyPEM, err = key.PrivatePEM(); err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(r.dir, "chaos-1.pem")
	if err := os.WriteFile(keyPath, r.keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(signer.JWKS(key))
	if err != nil {
		t.Fatal(err)
	}
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(jwksSrv.Close)

	var raw [16]byte
	_, _ = rand.Read(raw[:])
	r.secret = "chaos-secret-" + hex.EncodeToString(raw[:])

	// The receiver's outage starts once publishing is well under way; its
	// clock starts when it does, shortly before publishing.
	ports := freePorts(t, 1+*flagWorkers)
	r.receiverURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	downAfter := 20*time.Second + time.Duration(0.6*float64(r.duration))
	concurrency, pause := 32, fmt.Sprintf("{threshold: %d, initial: 2s, max: 4s}", pauseThreshold)
	if r.degraded {
		downAfter = 24 * time.Hour // no outage: degraded throughout
		concurrency, pause = 64, "{threshold: 5, initial: 30s, max: 10m}"
	}
	// The secret goes through the environment, as an operator should pass
	// it: a command line is visible to every user of the machine.
	r.receiver = newProc("receiver", r.bin, r.dir, []string{"SETRELAY_RECEIVER_CLIENT_SECRET=" + r.secret},
		"receiver",
		"--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--client-id", "chaos-client",
		"--issuer", "https://chaos.setrelay.test/",
		"--audience", "https://receiver.chaos.test/",
		"--jwks-url", jwksSrv.URL,
		"--token-lifetime", tokenLifetime.String(),
		"--fail-rate", "0.10",
		"--hang-rate", "0.02",
		"--rate-429", "0.02",
		"--retry-after", "1s",
		"--revoke-token-every", fmt.Sprint(revokeEvery),
		"--reject-txn-prefix", rejectPrefix,
		"--down-after", downAfter.String(),
		"--down-for", outageFor.String(),
		"--seed", fmt.Sprint(r.seed),
	)
	r.receiver.start(t)
	t.Cleanup(func() { _ = r.receiver.stop(t, 5*time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitHTTP(ctx, r.receiverURL+"/healthz"); err != nil {
		t.Fatalf("receiver did not start: %v\n%s", err, tail(r.receiver.logFiles()))
	}

	// One config for every worker; only the ops port differs, through the
	// environment.
	r.configPath = filepath.Join(r.dir, "setrelay.yaml")
	cfg := fmt.Sprintf(`issuer: https://chaos.setrelay.test/
nats:
  url: %s
  replicas: 3
  max_ack_pending: 256
  ack_wait: %s
keys:
  - id: chaos-1
    file: %s
    alg: ES256
worker:
  concurrency: %d
  grace_period: %s
ops:
  listen: 127.0.0.1:${CHAOS_OPS_PORT}
log:
  level: info
  format: json
receivers:
  - name: %s
    endpoint: %s/events
    audience: https://receiver.chaos.test/
    key: chaos-1
    subject: sub_id
    auth:
      token_url: %s/token
      client_id: chaos-client
      client_secret: ${CHAOS_CLIENT_SECRET}
    insecure_http: true
    timeout: %s
    retry: {initial: 200ms, max: 2s, max_attempts: %d, max_age: 1h}
    pause: %s
`, r.cluster.URLs(), ackWait, keyPath, concurrency, gracePeriod, chaosReceiver, r.receiverURL, r.receiverURL, pushTimeout, *flagAttempts, pause)
	if err := os.WriteFile(r.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"CHAOS_CLIENT_SECRET=" + r.secret, "CHAOS_OPS_PORT=0"}

	prov := newProc("provision", r.bin, r.dir, env, "provision", "--config", r.configPath)
	prov.start(t)
	if exited, err := prov.wait(90 * time.Second); !exited || err != nil {
		prov.kill(t)
		t.Fatalf("setrelay provision: exited=%v err=%v\n%s", exited, err, tail(prov.logFiles()))
	}

	for i := range *flagWorkers {
		w := newProc(fmt.Sprintf("worker-%d", i+1), r.bin, r.dir,
			append(env[:1:1], fmt.Sprintf("CHAOS_OPS_PORT=%d", ports[1+i])),
			"run", "--config", r.configPath)
		w.start(t)
		r.workers = append(r.workers, w)
	}
	t.Cleanup(func() {
		for _, w := range r.workers {
			w.kill(t)
		}
	})
	// Workers connect and provision (idempotently) before serving /readyz;
	// on a loaded 2-core machine that can take a while.
	wctx, wcancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer wcancel()
	for i, w := range r.workers {
		r.readyURLs = append(r.readyURLs, fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[1+i]))
		if err := waitHTTP(wctx, r.readyURLs[i]); err != nil {
			t.Fatalf("%s not ready: %v\n%s", w.name, err, tail(w.logFiles()))
		}
	}
}

// publishWithChaos publishes the intents at a steady rate while killing
// things, and returns when both are done.
func (r *run) publishWithChaos() {
	t := r.t
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.started = time.Now()

	pub := queue.NewPublisher(r.js, intent.Options{})
	pubDone := make(chan error, 1)
	go func() { pubDone <- r.publish(ctx, pub) }()

	killEvery := *flagKillEvery
	if killEvery <= 0 {
		killEvery = min(max(r.duration/20, 3*time.Second), 6*time.Second)
	}
	var (
		nextKill   = r.started.Add(killEvery)
		natsKillAt = r.started.Add(time.Duration(0.3 * float64(r.duration)))
		termAt     = r.started.Add(time.Duration(0.5 * float64(r.duration)))
		natsDown   = -1
		natsUpAt   time.Time
		published  bool
		pubErr     error
		tick       = time.NewTicker(100 * time.Millisecond)
		lastPoll   time.Time
	)
	defer tick.Stop()
	cons, err := r.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(chaosReceiver))
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case pubErr = <-pubDone:
			published = true
			pubDone = nil
		case <-tick.C:
		}
		now := time.Now()
		// Chaos lasts as long as publishing, and at least the run's duration.
		chaosOver := published && now.Sub(r.started) >= r.duration
		if published && pubErr != nil {
			t.Fatalf("publishing: %v", pubErr)
		}
		if now.Sub(lastPoll) >= 250*time.Millisecond {
			lastPoll = now
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			if info, err := cons.Info(pctx); err == nil && info.Paused {
				r.pausedSeen.Store(true)
			}
			pcancel()
		}
		if natsDown < 0 && r.cluster.kills == 0 && now.After(natsKillAt) {
			natsDown = r.killIntentLeader(ctx)
			natsUpAt = now.Add(5 * time.Second)
		}
		if natsDown >= 0 && now.After(natsUpAt) {
			rctx, rcancel := context.WithTimeout(ctx, 60*time.Second)
			if err := r.cluster.restartNode(rctx, natsDown); err != nil {
				t.Fatal(err)
			}
			rcancel()
			t.Logf("chaos: +%v restarted %s", r.since(), r.cluster.nodes[natsDown].serverName)
			natsDown = -1
		}
		if r.sigterms == 0 && now.After(termAt) {
			r.gracefulRestart()
		}
		if !chaosOver && now.After(nextKill) {
			r.killRandomWorker()
			nextKill = time.Now().Add(killEvery)
		}
		if chaosOver && natsDown < 0 && r.sigterms > 0 && r.cluster.kills > 0 {
			return
		}
	}
}

// publish sends every intent once, at the run's rate, retrying a failed
// publish with the same id (Nats-Msg-Id de-duplicates) until it is stored.
func (r *run) publish(ctx context.Context, pub *queue.Publisher) error {
	interval := time.Duration(float64(time.Second) / r.rate)
	next := time.Now()
	for i := range r.intents {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(interval)
		in := chaosIntent(i)
		if strings.HasPrefix(in.Txn, rejectPrefix) {
			r.rejectIDs = append(r.rejectIDs, in.ID)
		} else {
			r.goodIDs = append(r.goodIDs, in.ID)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := pub.Publish(pctx, in)
			cancel()
			if err == nil {
				break
			}
			var verr *intent.ValidationError
			if errors.As(err, &verr) {
				return fmt.Errorf("intent %s is invalid (a bug in the test): %w", in.ID, err)
			}
			r.publishErrors.Add(1)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("intent %s not stored after 60 s of retries: %w", in.ID, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// chaosIntent is intent i: three event types and subject formats in turn,
// and every rejectEvery-th one carrying the txn prefix the receiver rejects.
func chaosIntent(i int) *intent.Intent {
	in := &intent.Intent{ID: fmt.Sprintf("chaos-%06d", i), Txn: fmt.Sprintf("txn-%06d", i)}
	if i%rejectEvery == rejectEvery/2 {
		in.Txn = rejectPrefix + in.Txn
	}
	switch i % 3 {
	case 0:
		in.Type = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
		in.Subject = map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", i)}
	case 1:
		in.Type = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
		in.Subject = map[string]any{"format": "opaque", "id": fmt.Sprintf("acct-%d", i)}
		in.Event = map[string]any{"credential_type": "password", "change_type": "update"}
	default:
		in.Type = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
		in.Subject = map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": fmt.Sprintf("sub-%d", i)}
		in.Event = map[string]any{"reason": "hijacking"}
	}
	return in
}

func (r *run) since() time.Duration { return time.Since(r.started).Round(100 * time.Millisecond) }

// killRandomWorker SIGKILLs a running worker and starts it again after a
// short pause: whatever it held unacknowledged must be redelivered.
func (r *run) killRandomWorker() {
	w := r.workers[r.rng.IntN(len(r.workers))]
	if !w.running() {
		return
	}
	w.kill(r.t)
	r.workerKills++
	time.Sleep(300 * time.Millisecond)
	w.start(r.t)
	r.t.Logf("chaos: +%v SIGKILL %s, restarted", r.since(), w.name)
}

// gracefulRestart sends SIGTERM to a worker, which must finish or hand back
// its in-flight work within its grace period and exit 0, then restarts it.
func (r *run) gracefulRestart() {
	i := r.rng.IntN(len(r.workers))
	w := r.workers[i]
	// The worker may have just been restarted after a SIGKILL. A process
	// that has not yet reached main dies of SIGTERM like any Go program
	// before its handler is installed (with nothing in flight, so nothing
	// to shut down gracefully); wait until it serves /readyz, so the
	// signal tests the graceful path.
	rctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	err := waitHTTP(rctx, r.readyURLs[i])
	cancel()
	if err != nil {
		r.sigtermErr = fmt.Errorf("%s never became ready for the SIGTERM: %w", w.name, err)
		return
	}
	r.sigterms++
	begin := time.Now()
	err = w.stop(r.t, gracePeriod+10*time.Second)
	if err != nil {
		r.sigtermErr = fmt.Errorf("%s after SIGTERM: %w", w.name, err)
	}
	r.t.Logf("chaos: +%v SIGTERM %s: exited in %v (err=%v), restarting", r.since(), w.name, time.Since(begin).Round(time.Millisecond), err)
	w.start(r.t)
}

// killIntentLeader SIGKILLs the node leading the intents stream, the
// harshest choice, or a random node if the leader is unknown.
func (r *run) killIntentLeader(ctx context.Context) int {
	victim := r.rng.IntN(len(r.cluster.nodes))
	ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if s, err := r.js.Stream(ictx, queue.IntentStream); err == nil && s.CachedInfo().Cluster != nil {
		if i := r.cluster.nodeIndex(s.CachedInfo().Cluster.Leader); i >= 0 {
			victim = i
		}
	}
	r.cluster.killNode(victim)
	r.t.Logf("chaos: +%v SIGKILL nats node %s", r.since(), r.cluster.nodes[victim].serverName)
	return victim
}

// drain waits, bounded, until the receiver's consumer has nothing pending
// or unacknowledged: every intent delivered or dead-lettered.
func (r *run) drain() {
	t := r.t
	begin := time.Now()
	limit := max(2*time.Minute, r.duration)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last *jetstream.ConsumerInfo
	for {
		ictx, icancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err := r.js.Consumer(ictx, queue.IntentStream, queue.ConsumerName(chaosReceiver))
		if err == nil {
			last, err = cons.Info(ictx)
		}
		icancel()
		if err == nil && last.NumPending == 0 && last.NumAckPending == 0 {
			r.drainedIn = time.Since(begin)
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("queue not drained within %v after publishing: last consumer info %+v (err %v)", limit, last, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stopWorkers shuts every worker down gracefully; each must exit 0.
func (r *run) stopWorkers() {
	for _, w := range r.workers {
		if err := w.stop(r.t, gracePeriod+10*time.Second); err != nil {
			r.t.Errorf("%s: graceful stop at the end: %v\n%s", w.name, err, tail(w.stderrFiles()))
		}
	}
}

// check gathers what the receiver accepted and the dead-letter stream holds
// and holds them against what was published.
func (r *run) check() {
	t := r.t
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	stats, err := r.receiverStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The receiver's current access token is a secret too: the same token
	// the workers hold now.
	token, err := fetchToken(ctx, r.receiverURL, r.secret)
	if err != nil || token == "" {
		t.Errorf("could not read the receiver's current token for the log scan: %v", err)
	}
	// Scan the receiver's per-SET log lines before stopping it, so nothing
	// is still buffered.
	_ = r.receiver.stop(t, 5*time.Second)
	accepted, err := acceptedJTIs(r.receiver.logFiles())
	if err != nil {
		t.Fatal(err)
	}

	// Every intent not designed to fail was accepted, by its stable jti.
	var lost []string
	for _, id := range r.goodIDs {
		if !accepted[set.JTI(id, chaosReceiver, "")] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("LOST: %d intents never accepted by the receiver, e.g. %v", len(lost), lost[:min(10, len(lost))])
	}
	if int(stats.Accepted) != len(r.goodIDs) {
		t.Errorf("receiver accepted %d unique jtis, want exactly %d (one per good intent)", stats.Accepted, len(r.goodIDs))
	}
	if len(accepted) != int(stats.Accepted) {
		t.Errorf("receiver log shows %d unique accepted jtis but /stats says %d: the per-SET log lines are incomplete (sampled or dropped), so the per-intent check above cannot be trusted", len(accepted), stats.Accepted)
	}
	for _, id := range r.rejectIDs {
		if accepted[set.JTI(id, chaosReceiver, "")] {
			t.Errorf("designed rejection %s was accepted", id)
		}
	}

	// Every designed rejection is dead-lettered with reason invalid_request,
	// and nothing else is.
	// The cluster may still be electing the dead-letter stream's leader
	// after the node restart ("no responders"): ask again for a while, a
	// listing that never comes back is still a failure.
	var dls []queue.StoredDeadLetter
	for deadline := time.Now().Add(30 * time.Second); ; {
		if dls, err = queue.NewDLQ(r.js).List(ctx, queue.Filter{}); err == nil || time.Now().After(deadline) {
			break
		}
		t.Logf("list dead letters: %v; asking again", err)
		time.Sleep(time.Second)
	}
	if err != nil {
		t.Fatalf("list dead letters: %v", err)
	}
	wantDL := make(map[string]bool, len(r.rejectIDs))
	for _, id := range r.rejectIDs {
		wantDL[id] = false
	}
	var unexpected []string
	for _, dl := range dls {
		if _, ok := wantDL[dl.IntentID]; !ok || dl.Reason != "invalid_request" || dl.Receiver != chaosReceiver || dl.Status != http.StatusBadRequest {
			unexpected = append(unexpected, fmt.Sprintf("%s: receiver=%s reason=%s status=%d err=%s attempts=%d", dl.IntentID, dl.Receiver, dl.Reason, dl.Status, dl.Err, dl.Attempts))
			continue
		}
		wantDL[dl.IntentID] = true
	}
	if len(unexpected) > 0 {
		sort.Strings(unexpected)
		t.Errorf("%d unexpected dead letters, e.g.:\n  %s", len(unexpected), strings.Join(unexpected[:min(10, len(unexpected))], "\n  "))
	}
	var missingDL []string
	for id, seen := range wantDL {
		if !seen {
			missingDL = append(missingDL, id)
		}
	}
	if len(missingDL) > 0 {
		sort.Strings(missingDL)
		t.Errorf("LOST: %d designed rejections not in the dead-letter stream: %v", len(missingDL), missingDL)
	}

	// Retransmissions are identical: no jti re-used with other claims, and
	// no other protocol violation under chaos. Refused tokens are expected:
	// the receiver revokes them on purpose.
	mismatched := stats.Violations[receiver.VJTIReuseMismatch]
	if mismatched != 0 {
		t.Errorf("%d duplicates with different claims (jti re-used for another SET)", mismatched)
	}
	for kind, n := range stats.Violations {
		switch kind {
		case receiver.VJTIReuseMismatch, receiver.VTokenRevoked, receiver.VTokenExpired:
		default:
			if n > 0 {
				t.Errorf("receiver recorded %d %s violations", n, kind)
			}
		}
	}

	// The chaos really happened.
	if r.workerKills < 3 {
		t.Errorf("only %d worker kills; want at least 3 (lengthen -duration)", r.workerKills)
	}
	if r.cluster.kills != 1 {
		t.Errorf("%d NATS node kills, want 1", r.cluster.kills)
	}
	if r.sigtermErr != nil {
		t.Errorf("graceful shutdown: %v", r.sigtermErr)
	}
	// The outage must have been met (503s answered) and must have paused
	// the consumer: JetStream reported it paused at least once.
	if stats.Faults[receiver.FaultDown] == 0 {
		t.Errorf("the receiver outage answered no requests: it fell outside the run")
	}
	if !r.pausedSeen.Load() {
		t.Errorf("the consumer was never seen paused, though the receiver was down for %v (pause threshold %d failures)", outageFor, pauseThreshold)
	}
	for _, f := range []string{receiver.Fault500, receiver.FaultHang, receiver.Fault429} {
		if stats.Faults[f] == 0 {
			t.Errorf("receiver injected no %q faults", f)
		}
	}
	if len(r.goodIDs) >= revokeEvery && stats.Faults[receiver.FaultRevokeToken] == 0 {
		t.Errorf("the receiver never revoked a token")
	}
	if stats.TokensIssued < 2 {
		t.Errorf("only %d tokens issued; the %v lifetime should force refreshes", stats.TokensIssued, tokenLifetime)
	}

	// No worker panicked; no secret in any log.
	var workerErrs []string
	for _, w := range r.workers {
		workerErrs = append(workerErrs, w.stderrFiles()...)
	}
	for _, hit := range grepFiles(workerErrs, []string{"panic:", "fatal error:", "DATA RACE"}) {
		t.Errorf("worker crashed: %s", hit)
	}
	secrets := append(r.secretStrings(), token)
	var all []string
	all = append(all, r.receiver.logFiles()...)
	for _, w := range r.workers {
		all = append(all, w.logFiles()...)
	}
	all = append(all, r.cluster.logFiles()...)
	for _, hit := range grepFiles(all, secrets) {
		t.Errorf("secret in a log: %s", redactHit(hit, secrets))
	}
	if hits := grepRegexp(all, bearerRE); len(hits) > 0 {
		t.Errorf("bearer token in a log: %s", hits[0])
	}

	dupPct := 0.0
	if stats.Accepted > 0 {
		dupPct = 100 * float64(stats.Duplicates) / float64(stats.Accepted)
	}
	summary := fmt.Sprintf("chaos: intents=%d delivered=%d dlq=%d lost=%d dup=%.2f%% mismatched=%d worker_kills=%d nats_kills=%d duration=%ds",
		r.intents, stats.Accepted, countTrue(wantDL), len(lost)+len(missingDL), dupPct, mismatched,
		r.workerKills, r.cluster.kills, int(math.Round(time.Since(r.started).Seconds())))
	t.Logf("chaos: drained %v after publishing; publish retries=%d; receiver faults=%v tokens_issued=%d violations=%v", r.drainedIn.Round(100*time.Millisecond), r.publishErrors.Load(), stats.Faults, stats.TokensIssued, stats.Violations)
	t.Log(summary)
	fmt.Println(summary)
}

// secretStrings are strings that must appear in no log: the client secret
// and every base64 line of the private key.
func (r *run) secretStrings() []string {
	out := []string{r.secret}
	for _, line := range strings.Split(string(r.keyPEM), "\n") {
		if len(line) >= 32 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

var bearerRE = regexp.MustCompile(`(?i)bearer [A-Za-z0-9._~+/-]{16,}`)

func (r *run) receiverStats(ctx context.Context) (receiver.Stats, error) {
	var s receiver.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.receiverURL+"/stats", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("receiver /stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("receiver /stats: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("receiver /stats: %w", err)
	}
	return s, nil
}

var jtiRE = regexp.MustCompile(`"jti":\s*"([^"]+)"`)

// acceptedJTIs reads the receiver's per-SET log lines ("SET accepted" and
// "SET duplicate") and returns the set of jtis it accepted. /stats has the
// counts; the log names each SET.
func acceptedJTIs(files []string) (map[string]bool, error) {
	out := make(map[string]bool)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			if !bytes.Contains(line, []byte("SET accepted")) && !bytes.Contains(line, []byte("SET duplicate")) {
				continue
			}
			if m := jtiRE.FindSubmatch(line); m != nil {
				out[string(m[1])] = true
			}
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
	}
	return out, nil
}

// fetchToken gets the receiver's current access token, to scan the logs for
// it. The receiver returns the same token within its lifetime.
func fetchToken(ctx context.Context, base, secret string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("chaos-client", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.AccessToken, nil
}

// grepFiles returns "file:line: text" for every line containing one of needles.
func grepFiles(files, needles []string) []string {
	var hits []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			hits = append(hits, fmt.Sprintf("%s: unreadable: %v", f, err))
			continue
		}
		for n, line := range strings.Split(string(data), "\n") {
			for _, needle := range needles {
				if needle != "" && strings.Contains(line, needle) {
					hits = append(hits, fmt.Sprintf("%s:%d: %s", filepath.Base(f), n+1, line))
					break
				}
			}
		}
	}
	return hits
}

func grepRegexp(files []string, re *regexp.Regexp) []string {
	var hits []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for n, line := range strings.Split(string(data), "\n") {
			if re.MatchString(line) {
				hits = append(hits, fmt.Sprintf("%s:%d: %s", filepath.Base(f), n+1, line))
			}
		}
	}
	return hits
}

// redactHit keeps a failure message from repeating the secret it found.
func redactHit(hit string, secrets []string) string {
	for _, s := range secrets {
		hit = strings.ReplaceAll(hit, s, "[SECRET]")
	}
	return hit
}

func countTrue(m map[string]bool) int {
	n := 0
	for _, v := range m {
		if v {
			n++
		}
	}
	return n
}

// missingCommands lists the subcommands bin does not know.
func missingCommands(bin string, cmds ...string) []string {
	var missing []string
	for _, c := range cmds {
		out, err := exec.Command(bin, c, "--help").CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("unknown command")) {
			missing = append(missing, c)
		}
	}
	return missing
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string) error {
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %s)", url, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tail returns the last lines of files, for failure messages.
func tail(files []string) string {
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s (last %d lines)\n", filepath.Base(f), min(20, len(lines)))
		for _, l := range lines[max(0, len(lines)-20):] {
			b.WriteString(l)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
