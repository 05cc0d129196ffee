package chaos

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
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// Issue 17's limits, and the load that tests them.
const (
	fleetRate        = 100 // rate_limit of receiver "paced", SETs/s across the fleet
	fleetInFlight    = 8   // max_in_flight of receiver "slow"
	slowDelay        = 200 * time.Millisecond
	fleetWindow      = 5 * time.Second
	fleetTolerance   = 1.10 // the limit may be exceeded by at most 10 % over any window
	recoverWithin    = 10 * time.Second
	recoverMeasure   = 2 * time.Second // the rate after the changes is measured over this long
	fleetChangeAfter = 15 * time.Second
)

// fleetReceiver is the test's SSF receiver: it accepts every SET after
// slow's delay and records when each arrived and how many were in flight.
type fleetReceiver struct {
	delay time.Duration

	mu          sync.Mutex
	arrivals    []time.Time
	jtis        map[string]bool
	inFlight    int
	maxInFlight int
	token       string
}

func (f *fleetReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	jti, err := jtiOf(string(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.arrivals = append(f.arrivals, time.Now())
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.mu.Unlock()
	time.Sleep(f.delay)
	f.mu.Lock()
	f.inFlight--
	f.jtis[jti] = true
	f.mu.Unlock()
	w.WriteHeader(http.StatusAccepted)
}

// snapshot returns the arrivals so far, the distinct SETs accepted and the
// most requests ever in flight at once.
func (f *fleetReceiver) snapshot() ([]time.Time, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.arrivals...), len(f.jtis), f.maxInFlight
}

// jtiOf reads a compact JWS's jti without verifying it: this receiver
// measures load; signatures are verified by the other chaos tests.
func jtiOf(jws string) (string, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("not a compact JWS")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(raw, &c); err != nil || c.JTI == "" {
		return "", fmt.Errorf("no jti")
	}
	return c.JTI, nil
}

// TestFleetLimits is issue 17's proof: three `setrelay run` processes on a
// 3-node cluster share receiver limits through NATS. Receiver "paced" has
// rate_limit 100 and a backlog of intents; receiver "slow" answers after
// 200 ms and has max_in_flight 8. Mid-run one process is SIGKILLed and
// another started. The paced receiver never sees more than 110 SETs in any
// 5 s window, its rate is back to 90/s within 10 s of the changes, and the
// slow one never sees more than 8 requests at once.
func TestFleetLimits(t *testing.T) {
	paced, slowN := 5000, 1200
	if testing.Short() {
		paced, slowN = 2500, 600
	}
	dir := t.TempDir()
	if *flagLogDir != "" {
		dir = filepath.Join(*flagLogDir, "fleet")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := setrelayBinary(t)
	cluster := startCluster(t, dir, 3)
	nc, _ := cluster.connect(t)

	key, err := signer.GenerateKey(jose.ES256, "fleet-1")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := key.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "fleet-1.pem")
	if err := os.WriteFile(keyPath, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	token := "fleet-token-" + fmt.Sprint(time.Now().UnixNano())
	fast := &fleetReceiver{jtis: map[string]bool{}, token: token}
	slow := &fleetReceiver{jtis: map[string]bool{}, token: token, delay: slowDelay}
	fastSrv := httptest.NewServer(fast)
	t.Cleanup(fastSrv.Close)
	slowSrv := httptest.NewServer(slow)
	t.Cleanup(slowSrv.Close)

	configPath := filepath.Join(dir, "fleet.yaml")
	receiverYAML := func(name, url, limit string) string {
		return fmt.Sprintf(`  - name: %s
    endpoint: %s/events
    audience: https://%s.fleet.test/
    key: fleet-1
    subject: sub_id
    auth:
      authorization_header: Bearer ${FLEET_TOKEN}
    insecure_http: true
    %s
`, name, url, name, limit)
	}
	cfg := fmt.Sprintf(`issuer: https://fleet.setrelay.test/
nats:
  url: %s
  replicas: 3
  ack_wait: 6s
keys:
  - id: fleet-1
    file: %s
    alg: ES256
worker:
  concurrency: 32
  grace_period: 2s
ops:
  listen: 127.0.0.1:${FLEET_OPS_PORT}
log:
  level: info
  format: json
receivers:
%s%s`, cluster.URLs(), keyPath,
		receiverYAML("paced", fastSrv.URL, fmt.Sprintf("rate_limit: %d", fleetRate)),
		receiverYAML("slow", slowSrv.URL, fmt.Sprintf("max_in_flight: %d", fleetInFlight)))
	if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"FLEET_TOKEN=" + token}

	prov := newProc("provision", bin, dir, append(env, "FLEET_OPS_PORT=0"), "provision", "--config", configPath)
	prov.start(t)
	if exited, err := prov.wait(90 * time.Second); !exited || err != nil {
		prov.kill(t)
		t.Fatalf("setrelay provision: exited=%v err=%v\n%s", exited, err, tail(prov.logFiles()))
	}

	// The backlog, before any worker runs: each intent names its receiver.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bp, err := queue.NewBatchPublisher(nc, queue.BatchOptions{Window: 256})
	if err != nil {
		t.Fatal(err)
	}
	for i := range paced + slowN {
		// Each receiver's consumer skips the other's intents.
		name := "paced"
		if i < slowN {
			name = "slow"
		}
		in := &intent.Intent{
			ID: fmt.Sprintf("fleet-%06d", i), Type: "caep.session-revoked", Receivers: []string{name},
			Subject: map[string]any{"format": "email", "email": fmt.Sprintf("u%d@example.com", i)},
		}
		if err := bp.Publish(ctx, in, int64(i)); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if err := bp.Close(ctx); err != nil {
		t.Fatalf("publish: %v", err)
	}
	if st := bp.Stats(); st.Failed > 0 {
		t.Fatalf("publish: %+v", st)
	}
	if st := bp.Stats(); int(st.Stored) != paced+slowN {
		t.Fatalf("publish: %+v, want %d stored", st, paced+slowN)
	}
	t.Logf("backlog: %d intents for paced, %d for slow", paced, slowN)

	ports := freePorts(t, 4)
	var workers []*proc
	startWorker := func(i int) *proc {
		w := newProc(fmt.Sprintf("fleet-worker-%d", i+1), bin, dir,
			append(env, fmt.Sprintf("FLEET_OPS_PORT=%d", ports[i])), "run", "--config", configPath)
		w.start(t)
		workers = append(workers, w)
		return w
	}
	t.Cleanup(func() {
		for _, w := range workers {
			w.kill(t)
		}
	})
	for i := range 3 {
		startWorker(i)
	}

	// Wait for the first delivery, then change the fleet mid-run.
	for {
		if a, _, _ := fast.snapshot(); len(a) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("nothing delivered\n%s", tail(workers[0].logFiles()))
		}
		time.Sleep(100 * time.Millisecond)
	}
	first := time.Now()
	time.Sleep(fleetChangeAfter)
	changed := time.Now()
	workers[0].kill(t)
	startWorker(3)
	t.Logf("SIGKILLed %s and started %s %v after the first delivery", workers[0].name, workers[3].name, changed.Sub(first).Round(time.Millisecond))

	for {
		_, fastDone, _ := fast.snapshot()
		_, slowDone, _ := slow.snapshot()
		if fastDone >= paced && slowDone >= slowN {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not drained: paced %d/%d, slow %d/%d\n%s", fastDone, paced, slowDone, slowN, tail(workers[3].logFiles()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	arrivals, _, _ := fast.snapshot()
	_, _, maxSlow := slow.snapshot()
	drained := time.Since(first)

	// Every 5 s window, sliding over every arrival.
	worst, worstAt := maxInWindow(arrivals, fleetWindow)
	limit := int(fleetRate * fleetWindow.Seconds() * fleetTolerance)
	t.Logf("paced: %d requests (%d SETs) drained in %v; busiest %v window %d requests (%.1f/s) starting %v after the first",
		len(arrivals), paced, drained.Round(time.Millisecond), fleetWindow, worst, float64(worst)/fleetWindow.Seconds(), worstAt.Sub(arrivals[0]).Round(time.Millisecond))
	if worst > limit {
		t.Errorf("paced saw %d requests in a %v window starting %v after the first; the fleet limit %d/s allows %d", worst, fleetWindow, worstAt.Sub(arrivals[0]).Round(time.Millisecond), fleetRate, limit)
	}

	// Recovery: some recoverMeasure-long window starting after the changes
	// and ending within recoverWithin of them carries at least 90 % of the
	// limit.
	need := int(0.9 * fleetRate * recoverMeasure.Seconds())
	recovered := time.Duration(-1)
	for _, a := range arrivals {
		if a.Before(changed) {
			continue
		}
		if a.Add(recoverMeasure).After(changed.Add(recoverWithin)) {
			break
		}
		if countIn(arrivals, a, recoverMeasure) >= need {
			recovered = a.Add(recoverMeasure).Sub(changed)
			break
		}
	}
	t.Logf("paced per second from 2 s before the changes: %v", perSecond(arrivals, changed.Add(-2*time.Second), 14))
	t.Logf("paced per second from the first: %v", perSecond(arrivals, arrivals[0], int(drained/time.Second)+1))
	if recovered < 0 {
		t.Errorf("paced did not get back to %d SETs/s (over %v) within %v of the kill and the start", int(0.9*fleetRate), recoverMeasure, recoverWithin)
	} else {
		t.Logf("back to ≥ %d/s %v after the kill and the start", int(0.9*fleetRate), recovered.Round(time.Millisecond))
	}

	t.Logf("slow: at most %d requests in flight (limit %d)", maxSlow, fleetInFlight)
	if maxSlow > fleetInFlight {
		t.Errorf("slow saw %d requests in flight at once; max_in_flight is %d", maxSlow, fleetInFlight)
	}
	// A limit never reached proves nothing: the fleet must use it.
	if maxSlow < fleetInFlight-2 {
		t.Errorf("slow saw at most %d requests in flight; the fleet should use close to its %d", maxSlow, fleetInFlight)
	}

	// The run's log shows the fleet and this process's share.
	if hits := grepFiles(workers[3].stderrFiles(), []string{`"fleet shares"`}); len(hits) == 0 {
		if hits = grepFiles(workers[3].logFiles(), []string{`"fleet shares"`}); len(hits) == 0 {
			t.Errorf("%s never logged its fleet shares", workers[3].name)
		}
	}
}

// maxInWindow returns the most arrivals in any window of length d, and
// where that window starts. arrivals are sorted here.
func maxInWindow(arrivals []time.Time, d time.Duration) (int, time.Time) {
	sort.Slice(arrivals, func(i, j int) bool { return arrivals[i].Before(arrivals[j]) })
	best, at, j := 0, time.Time{}, 0
	for i := range arrivals {
		for j < len(arrivals) && arrivals[j].Sub(arrivals[i]) < d {
			j++
		}
		if j-i > best {
			best, at = j-i, arrivals[i]
		}
	}
	return best, at
}

// countIn counts the arrivals in [from, from+d).
func countIn(arrivals []time.Time, from time.Time, d time.Duration) int {
	n := 0
	for _, a := range arrivals {
		if !a.Before(from) && a.Before(from.Add(d)) {
			n++
		}
	}
	return n
}

// perSecond counts arrivals in each of n seconds from from, for the log.
func perSecond(arrivals []time.Time, from time.Time, n int) []int {
	out := make([]int, n)
	for _, a := range arrivals {
		if a.Before(from) {
			continue
		}
		if s := int(a.Sub(from) / time.Second); s < n {
			out[s]++
		}
	}
	return out
}
