package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/status"
)

// statusReceiver answers every push with status (202 unless changed) and
// issues hour-long tokens.
func statusReceiver(t *testing.T, code *atomic.Int64) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"tok","token_type":"Bearer","expires_in":3600}`))
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestStatusHealthyFailingPausedBlocked runs a relay with a healthy
// receiver, one failing (every push a 500, never paused, retries exhausted
// into dead letters) and one paused (500s, paused at the first failure),
// and checks what `setrelay status` says of each; then the healthy one's
// endpoint starts answering 404, a configuration failure: it is blocked and
// status exits 1.
func TestStatusHealthyFailingPausedBlocked(t *testing.T) {
	var okCode, failCode, pauseCode atomic.Int64
	okCode.Store(http.StatusAccepted)
	failCode.Store(http.StatusInternalServerError)
	pauseCode.Store(http.StatusInternalServerError)
	healthy, failing, paused := statusReceiver(t, &okCode), statusReceiver(t, &failCode), statusReceiver(t, &pauseCode)

	dir := t.TempDir()
	keyFile, _ := testenv.WriteKey(t, dir, jose.ES256, "k1")
	rcv := func(name, url, extra string) string {
		return fmt.Sprintf(`  - name: %s
    endpoint: %s/events
    audience: https://%s.example/
    key: k1
    insecure_http: true
    auth: {token_url: %s/token, client_id: relay, client_secret: s3cret}
%s`, name, url, name, url, extra)
	}
	y := fmt.Sprintf(`issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: {listen: "127.0.0.1:-1", store_dir: %s}
ops: {listen: "127.0.0.1:0"}
worker: {concurrency: 8, grace_period: 2s}
receivers:
%s%s%s`, keyFile, filepath.Join(dir, "js"),
		rcv("healthy", healthy.URL, ""),
		rcv("failing", failing.URL, "    retry: {initial: 50ms, max: 100ms, max_attempts: 2}\n    pause: {threshold: -1}\n"),
		rcv("paused", paused.URL, "    retry: {initial: 50ms, max: 100ms, max_attempts: 50}\n    pause: {threshold: 1, initial: 1m, max: 1m, probe_interval: 1m}\n"))
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := relay.Start(ctx, cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-ran })
	// The ops port is chosen at start; status finds it with --ops.
	ops := "http://" + svc.OpsAddr().String()

	for i := range 3 {
		in := fmt.Sprintf(`{"id":"st-%d","type":"risc.account-disabled","subject":{"format":"email","email":"u%d@example.com"}}`, i, i)
		if code, _, stderr := runCLI(t, in, "publish", "--nats-url", svc.ClientURL()); code != 0 {
			t.Fatalf("publish: %s", stderr)
		}
	}
	get := func() (status.Report, int) {
		t.Helper()
		code, out, stderr := runCLI(t, "", "status", "--config", file, "--nats-url", svc.ClientURL(), "--ops", ops, "--json")
		var rep status.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("status --json: exit %d, %v\n%s\n%s", code, err, out, stderr)
		}
		return rep, code
	}
	byName := func(rep status.Report) map[string]map[string]any {
		// Through JSON, as a script sees it.
		data, _ := json.Marshal(rep)
		var raw struct{ Receivers []map[string]any }
		_ = json.Unmarshal(data, &raw)
		m := map[string]map[string]any{}
		for _, r := range raw.Receivers {
			m[r["receiver"].(string)] = r
		}
		return m
	}

	var rep status.Report
	var code int
	deadline := time.Now().Add(30 * time.Second)
	for {
		rep, code = get()
		r := byName(rep)
		if r["healthy"]["delivered_last_minute"] == 3.0 && r["failing"]["dead_letters"] == 3.0 && r["paused"]["state"] == "paused" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay never settled into healthy/failing/paused: %+v", rep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := byName(rep)
	if code != 0 || len(rep.OpsErrors) != 0 {
		t.Errorf("exit %d, ops errors %v; want 0 and none", code, rep.OpsErrors)
	}
	h, f, p := r["healthy"], r["failing"], r["paused"]
	if h["state"] != "ok" || h["pending"] != 0.0 || h["in_flight"] != 0.0 || h["oldest_pending_seconds"] != 0.0 || h["dead_letters"] != 0.0 {
		t.Errorf("healthy: %v", h)
	}
	if left, _ := h["token_left_seconds"].(float64); left < 3500 || left > 3600 {
		t.Errorf("healthy token left %v s, want about an hour", h["token_left_seconds"])
	}
	if f["state"] != "failing" || f["reason"] != "http_5xx" || f["dead_letters_last_hour"] != 3.0 || f["delivered_last_minute"] != 0.0 ||
		!strings.Contains(fmt.Sprint(f["last_error"]), "http_5xx") {
		t.Errorf("failing: %v", f)
	}
	// Paused at the first failure: the intents wait, nothing is dead-lettered.
	if p["state"] != "paused" || p["dead_letters"] != 0.0 || p["pending"].(float64)+p["in_flight"].(float64) != 3 ||
		p["oldest_pending_seconds"].(float64) <= 0 || p["delivered_last_minute"] != 0.0 {
		t.Errorf("paused: %v", p)
	}

	// The table: one line per receiver, in configuration order.
	code, out, _ := runCLI(t, "", "status", "--config", file, "--nats-url", svc.ClientURL(), "--ops", ops)
	t.Logf("status:\n%s", out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[1], "healthy ") || !strings.Contains(lines[2], "failing (http_5xx)") ||
		!strings.HasPrefix(lines[3], "paused ") || !strings.Contains(lines[3], "paused (") {
		t.Errorf("status: exit %d\n%s", code, out)
	}

	// A configuration failure blocks the healthy receiver: exit status 1.
	okCode.Store(http.StatusNotFound)
	in := `{"id":"st-404","type":"risc.account-disabled","subject":{"format":"email","email":"x@example.com"}}`
	if code, _, stderr := runCLI(t, in, "publish", "--nats-url", svc.ClientURL()); code != 0 {
		t.Fatalf("publish: %s", stderr)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		rep, code = get()
		if byName(rep)["healthy"]["state"] == "blocked" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthy never blocked after 404s: %+v", byName(rep)["healthy"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != exitFailure {
		t.Errorf("status with a blocked receiver: exit %d, want %d", code, exitFailure)
	}
	code, out, _ = runCLI(t, "", "status", "--config", file, "--nats-url", svc.ClientURL(), "--ops", ops)
	t.Logf("blocked:\n%s", out)
	if code != exitFailure || !strings.Contains(out, "healthy is blocked since") || !strings.Contains(out, "receivers unblock healthy") {
		t.Errorf("blocked, text: exit %d\n%s", code, out)
	}
	// Blocked keeps the backlog: nothing of the healthy receiver's is
	// dead-lettered, and status counts it as pending.
	if dls, err := queue.NewDLQ(svc.JetStream()).List(context.Background(), queue.Filter{Receiver: "healthy"}); err != nil || len(dls) != 0 {
		t.Errorf("blocked receiver's dead letters: %d, %v", len(dls), err)
	}
	if h := byName(rep)["healthy"]; h["pending"].(float64)+h["in_flight"].(float64) != 1 || h["oldest_pending_seconds"].(float64) <= 0 {
		t.Errorf("blocked receiver's backlog not shown: %v", h)
	}
}

// TestStatusWatch runs `setrelay status --watch 50ms` against a real
// JetStream: it prints a fresh report every interval (an intent published
// while it runs shows up in a later one, so it collects again rather than
// reprinting), and an interrupt (the context's cancel) ends it with exit
// status 0.
func TestStatusWatch(t *testing.T) {
	url, _ := startQueueForCLI(t, "r1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- execute(ctx, []string{"status", "--nats-url", url, "--watch", "50ms"}, strings.NewReader(""), &out, &errb)
	}()
	// pendingRe matches r1's line with a pending count.
	pendingRe := regexp.MustCompile(`(?m)^r1\s+ok\s+(\d+)\s`)
	reports := func() []string {
		// Each report starts with a blank line and its time.
		return strings.Split(out.String(), "\n\n")[1:]
	}
	waitFor := func(what string, cond func([]string) bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond(reports()) {
			select {
			case code := <-exited:
				t.Fatalf("status --watch exited %d while waiting for %s\n%s\n%s", code, what, out.String(), errb.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("status --watch: no %s in 20s\n%s\n%s", what, out.String(), errb.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("two reports", func(r []string) bool { return len(r) >= 2 })
	for _, r := range reports()[:2] {
		at, _, _ := strings.Cut(r, "\n")
		if _, err := time.Parse(time.RFC3339, at); err != nil {
			t.Fatalf("a report does not start with its time: %q", r)
		}
		if m := pendingRe.FindStringSubmatch(r); m == nil || m[1] != "0" {
			t.Fatalf("before any intent, r1 should be ok with 0 pending:\n%s", r)
		}
	}
	if code, _, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url, "-"); code != 0 {
		t.Fatalf("publish: %s", stderr)
	}
	waitFor("report with the intent pending", func(r []string) bool {
		m := pendingRe.FindStringSubmatch(r[len(r)-1])
		return m != nil && m[1] == "1"
	})

	cancel()
	select {
	case code := <-exited:
		if code != exitOK {
			t.Fatalf("status --watch ended by an interrupt: exit %d, want 0\n%s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("status --watch did not stop within 10s of the interrupt")
	}
	n := len(reports())
	time.Sleep(200 * time.Millisecond)
	if len(reports()) != n {
		t.Fatal("status --watch printed after it returned")
	}
}

// TestStatusReceiverWithoutConsumer: a configured receiver whose consumer
// does not exist (added to the configuration but not provisioned yet, or
// pruned by mistake) gets nothing: the intents stream keeps a message only
// for the consumers that exist. status must still report every other
// receiver, show this one as having no consumer with the command that
// fixes it, and exit 1, rather than fail the whole report.
func TestStatusReceiverWithoutConsumer(t *testing.T) {
	url, _ := startQueueForCLI(t, "govuk")
	dir := t.TempDir()
	keyFile, _ := testenv.WriteKey(t, dir, jose.ES256, "k1")
	y := fmt.Sprintf(`issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
ops: {listen: "127.0.0.1:1"}
receivers:
  - name: govuk
    endpoint: https://rcv.example/events
    audience: https://govuk.example/
    key: k1
  - name: added
    endpoint: https://added.example/events
    audience: https://added.example/
    key: k1
`, keyFile)
	file := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(file, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := runCLI(t, "", "status", "--config", file, "--nats-url", url)
	if code != exitFailure {
		t.Errorf("status with an unprovisioned receiver: exit %d, want 1\n%s%s", code, out, stderr)
	}
	if !regexp.MustCompile(`(?m)^govuk\s+ok\s`).MatchString(out) || !regexp.MustCompile(`(?m)^added\s+no_consumer\s`).MatchString(out) {
		t.Errorf("status does not list both receivers, the added one without a consumer:\n%s%s", out, stderr)
	}
	if !strings.Contains(out, "setrelay provision --config "+file) {
		t.Errorf("status does not say how to create the missing consumer:\n%s", out)
	}

	code, out, stderr = runCLI(t, "", "status", "--config", file, "--nats-url", url, "--json")
	var rep status.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitFailure || len(rep.Receivers) != 2 {
		t.Fatalf("status --json: exit %d, %v\n%s%s", code, err, out, stderr)
	}
	if r := rep.Receivers[1]; r.Name != "added" || r.State != "no_consumer" || r.Fix == "" {
		t.Errorf("status --json for the unprovisioned receiver: %+v", r)
	}
}
