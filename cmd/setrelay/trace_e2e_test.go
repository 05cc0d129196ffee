package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/otlptest"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
)

// traceReceiver is an SSF push endpoint that fails its first request with a
// 500 and accepts the rest, keeping each request's traceparent and body.
type traceReceiver struct {
	mu          sync.Mutex
	traceparent []string
	sets        []string
	status      []int
}

func (tr *traceReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.traceparent = append(tr.traceparent, r.Header.Get("Traceparent"))
	tr.sets = append(tr.sets, string(body))
	status := http.StatusAccepted
	if len(tr.status) == 0 {
		status = http.StatusInternalServerError
	}
	tr.status = append(tr.status, status)
	w.WriteHeader(status)
}

func (tr *traceReceiver) snapshot() (tps, sets []string, status []int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.traceparent...), append([]string(nil), tr.sets...), append([]int(nil), tr.status...)
}

// One trace from `setrelay publish` through the relay's two delivery
// attempts (a 500, then a retry that is accepted) to the receiver's HTTP
// requests, exported over OTLP/HTTP to a real receiver and checked span by
// span: parents, attributes, the receiver's traceparent, the latency
// exemplar, and that no claim value leaks into any attribute.
func TestTraceFromPublishToReceiver(t *testing.T) {
	otlp := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // ms: export soon, not every 5 s
	t.Setenv("TRACEPARENT", "")

	rcv := &traceReceiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: srv.URL + "/events"})
	rc.Config.Receivers[0].Retry.Initial = 100 * time.Millisecond

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := relay.Start(ctx, rc.Config, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()

	const intentJSON = `{"id":"trace-1","type":"risc.account-disabled","subject":{"format":"email","email":"trace.subject@example.com"},"event":{"reason":"hijacking"},"txn":"txn-trace-77"}`
	if code, out, stderr := runCLI(t, intentJSON, "publish", "--nats-url", svc.ClientURL()); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, status := rcv.snapshot(); len(status) >= 2 && testenv.StreamMsgs(t, svc.JetStream(), queue.IntentStream) == 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tps, sets, status := rcv.snapshot()
	if len(status) != 2 || status[0] != 500 || status[1] != 202 {
		t.Fatalf("receiver answered %v, want a 500 then a 202", status)
	}

	// The latency histogram's exemplar names the trace (OpenMetrics only).
	exemplar := scrapeExemplar(t, "http://"+svc.OpsAddr().String()+"/metrics")

	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("relay: %v", err)
	}
	if errs := otlp.Errors(); len(errs) > 0 {
		t.Fatalf("OTLP receiver refused exports: %v", errs)
	}

	spans := otlp.Spans()
	byName := map[string][]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = append(byName[s.Name], s)
	}
	if len(byName["setrelay publish"]) != 1 || len(byName["send setrelay.intent"]) != 1 {
		t.Fatalf("want one publish and one send span, got %v", names(spans))
	}
	root, send := byName["setrelay publish"][0], byName["send setrelay.intent"][0]
	traceID := root.TraceID
	for _, s := range spans {
		if s.TraceID != traceID {
			t.Errorf("span %q is in trace %s, not the publish's %s", s.Name, s.TraceID, traceID)
		}
	}
	if root.ParentID != "" || send.ParentID != root.SpanID {
		t.Errorf("publish span parent %q, send span parent %q (want root, then %s)", root.ParentID, send.ParentID, root.SpanID)
	}
	if exemplar != traceID {
		t.Errorf("latency exemplar trace_id %q, want %s", exemplar, traceID)
	}

	attempts := byName["process setrelay.intent"]
	if len(attempts) != 2 {
		t.Fatalf("want 2 attempt spans, got %v", names(spans))
	}
	wantAttempt := []struct{ attempt, outcome, reason, status string }{
		{"1", "retry", "http_5xx", "500"},
		{"2", "delivered", "", "202"},
	}
	var jti string
	if claims := setClaims(t, sets[1]); claims != nil {
		jti, _ = claims["jti"].(string)
	}
	for i, a := range attempts {
		w := wantAttempt[i]
		if a.ParentID != send.SpanID || a.Kind.String() != "SPAN_KIND_CONSUMER" {
			t.Errorf("attempt %d: parent %s kind %s, want consumer under send %s", i+1, a.ParentID, a.Kind, send.SpanID)
		}
		if a.Attrs["setrelay.attempt"] != w.attempt || a.Attrs["setrelay.outcome"] != w.outcome || a.Attrs["setrelay.reason"] != w.reason ||
			a.Attrs["setrelay.receiver"] != "local" || a.Attrs["setrelay.jti"] != jti || jti == "" ||
			a.Attrs["messaging.system"] != "nats" || a.Attrs["messaging.destination.name"] != queue.IntentSubject ||
			a.Attrs["messaging.consumer.group.name"] != queue.ConsumerName("local") || a.Attrs["messaging.message.id"] != "trace-1" {
			t.Errorf("attempt %d attributes %v (want attempt %s, outcome %s, reason %q, jti %s)", i+1, a.Attrs, w.attempt, w.outcome, w.reason, jti)
		}
		children := map[string]otlptest.Span{}
		for _, s := range spans {
			if s.ParentID == a.SpanID {
				children[s.Name] = s
			}
		}
		for _, stage := range []string{"decode", "build", "sign", "push"} {
			if _, ok := children[stage]; !ok {
				t.Errorf("attempt %d has no %s span (children %v)", i+1, stage, children)
			}
		}
		push := children["push"]
		if push.Attrs["http.response.status_code"] != w.status || push.Attrs["server.address"] != "127.0.0.1" || push.Attrs["http.request.method"] != "POST" {
			t.Errorf("attempt %d push span attributes %v", i+1, push.Attrs)
		}
		// The receiver saw this attempt's push span as its parent.
		if want := "00-" + traceID + "-" + push.SpanID + "-01"; tps[i] != want {
			t.Errorf("request %d traceparent %q, want %q", i+1, tps[i], want)
		}
	}

	// No claim value (the jti aside, which is meant to be there) in any
	// attribute of any span.
	secretish := []string{"trace.subject@example.com", "txn-trace-77", "hijacking", "https://issuer.example/", "https://rcv.example/"}
	for _, set := range sets {
		secretish = append(secretish, claimStrings(setClaims(t, set), jti)...)
	}
	for _, s := range spans {
		for k, v := range s.Attrs {
			for _, c := range secretish {
				if len(c) >= 4 && strings.Contains(v, c) {
					t.Errorf("span %q attribute %s = %q holds claim value %q", s.Name, k, v, c)
				}
			}
		}
	}
}

func names(spans []otlptest.Span) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// setClaims decodes a compact JWS's payload (the signature is checked by
// the relay tests; here only the content matters).
func setClaims(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", jws)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// claimStrings lists every string leaf of the claims but skip.
func claimStrings(v any, skip string) []string {
	var out []string
	switch x := v.(type) {
	case string:
		if x != skip {
			out = append(out, x)
		}
	case map[string]any:
		for _, e := range x {
			out = append(out, claimStrings(e, skip)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, claimStrings(e, skip)...)
		}
	}
	return out
}

var exemplarRE = regexp.MustCompile(`setrelay_publish_to_delivery_seconds_bucket\{[^}]*\} \d+ # \{trace_id="([0-9a-f]{32})"\}`)

// scrapeExemplar fetches /metrics in the OpenMetrics format and returns
// the trace id of the latency histogram's exemplar.
func scrapeExemplar(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := exemplarRE.FindStringSubmatch(string(body))
	if m == nil {
		t.Fatalf("no exemplar on the latency histogram (content type %s):\n%s", resp.Header.Get("Content-Type"), grepLines(string(body), "publish_to_delivery"))
	}
	return m[1]
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// startTraceRelay starts a relay pushing to h, stopped when the test ends
// (the returned stop is for stopping earlier, to flush its spans).
func startTraceRelay(t *testing.T, h http.Handler) (*relay.Service, func()) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: srv.URL + "/events"})
	rc.Config.Receivers[0].Retry.Initial = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := relay.Start(ctx, rc.Config, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- svc.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-ran; err != nil {
				t.Errorf("relay: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return svc, stop
}

// With tracing off, a producer's traceparent still reaches the receiver
// unchanged (W3C Trace Context asks that of a hop that does not trace).
func TestTraceparentForwardedWhenTracingIsOff(t *testing.T) {
	t.Setenv("TRACEPARENT", "")
	rcv := &traceReceiver{status: []int{202}} // accept from the first push
	svc, _ := startTraceRelay(t, rcv)
	const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if code, _, stderr := runCLI(t, goodIntent, "publish", "--nats-url", svc.ClientURL(), "--traceparent", given); code != 0 {
		t.Fatalf("publish: %s", stderr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if tps, _, _ := rcv.snapshot(); len(tps) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if tps, _, _ := rcv.snapshot(); len(tps) != 1 || tps[0] != given {
		t.Errorf("receiver saw traceparent %q, want the producer's %q", tps, given)
	}
}

// A dead letter keeps the failed attempt's trace context and `dlq replay`
// puts it back, so the replay's delivery is in the original trace, under
// the attempt that failed.
func TestReplayJoinsTheOriginalTrace(t *testing.T) {
	otlp := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("TRACEPARENT", "")
	var refused atomic.Bool
	svc, stop := startTraceRelay(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refused.CompareAndSwap(false, true) {
			// Permanent for this SET: dead-lettered at once.
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"err":"invalid_request","description":"bad"}`)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	url := svc.ClientURL()
	if code, _, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url); code != 0 {
		t.Fatalf("publish: %s", stderr)
	}
	var seq string
	waitFor(t, "the dead letter", func() bool {
		_, out, _ := runCLI(t, "", "dlq", "list", "--nats-url", url, "--json")
		var dl queue.StoredDeadLetter // NDJSON: one per line
		if json.Unmarshal([]byte(strings.TrimSpace(out)), &dl) != nil || dl.Seq == 0 {
			return false
		}
		seq = fmt.Sprint(dl.Seq)
		return true
	})
	_, show, _ := runCLI(t, "", "dlq", "show", seq, "--nats-url", url)
	m := regexp.MustCompile(`traceparent:\s+00-([0-9a-f]{32})-([0-9a-f]{16})-01`).FindStringSubmatch(show)
	if m == nil {
		t.Fatalf("dlq show has no traceparent:\n%s", show)
	}
	if code, out, stderr := runCLI(t, "", "dlq", "replay", seq, "--nats-url", url); code != 0 {
		t.Fatalf("replay: %d %s %s", code, out, stderr)
	}
	waitFor(t, "the replay delivered", func() bool { return testenv.StreamMsgs(t, svc.JetStream(), queue.IntentStream) == 0 })
	stop()

	var failed, replayed *otlptest.Span
	spans := otlp.Spans()
	for i, s := range spans {
		switch {
		case s.Name == "process "+queue.IntentSubject && s.Attrs["setrelay.outcome"] == "dead_lettered":
			failed = &spans[i]
		case strings.HasPrefix(s.Name, "process "+queue.ReplaySubjectPrefix) && s.Attrs["setrelay.outcome"] == "delivered":
			replayed = &spans[i]
		}
	}
	if failed == nil || replayed == nil {
		t.Fatalf("want a dead-lettered attempt and a delivered replay, got %v", names(spans))
	}
	if failed.TraceID != m[1] || failed.SpanID != m[2] {
		t.Errorf("dead letter's traceparent %s-%s, want the failed attempt %s-%s", m[1], m[2], failed.TraceID, failed.SpanID)
	}
	if replayed.TraceID != failed.TraceID || replayed.ParentID != failed.SpanID {
		t.Errorf("replay span in trace %s under %s, want trace %s under the failed attempt %s", replayed.TraceID, replayed.ParentID, failed.TraceID, failed.SpanID)
	}
	if failed.Attrs["setrelay.reason"] != "invalid_request" || replayed.Attrs["setrelay.jti"] == failed.Attrs["setrelay.jti"] {
		t.Errorf("failed %v, replayed %v: want reason invalid_request and a new jti for the replay", failed.Attrs, replayed.Attrs)
	}
}
