package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/otlptest"
	"github.com/setrelay/setrelay/queue"
)

// firstIntent fetches the first intent message through a throwaway
// ordered consumer, leaving the receivers' consumers alone.
func firstIntent(t *testing.T, js jetstream.JetStream, seq uint64) jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(t.Context(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return *msg
}

func TestPublishTraceparentFlagAndEnvironment(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	// Tracing off: the given traceparent is forwarded unchanged.
	if code, out, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url, "--traceparent", given); code != 0 {
		t.Fatalf("publish --traceparent: exit %d %s %s", code, out, stderr)
	}
	if got := firstIntent(t, js, 1).Header.Get(queue.HeaderTraceparent); got != given {
		t.Errorf("traceparent %q, want %q", got, given)
	}
	t.Setenv("TRACEPARENT", given)
	t.Setenv("TRACESTATE", "vendor=x")
	if code, _, stderr := runCLI(t, goodIntent2, "publish", "--nats-url", url); code != 0 {
		t.Fatalf("publish with TRACEPARENT: exit %d %s", code, stderr)
	}
	if h := firstIntent(t, js, 2).Header; h.Get(queue.HeaderTraceparent) != given || h.Get("tracestate") != "vendor=x" {
		t.Errorf("from the environment: headers %v", h)
	}
	t.Setenv("TRACEPARENT", "")

	code, _, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url, "--traceparent", "00-nothex-00f067aa0ba902b7-01")
	if code != exitUsage || !strings.Contains(stderr, "not a W3C traceparent") {
		t.Errorf("malformed --traceparent: exit %d, %s", code, stderr)
	}
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, publish exports a root span and a
// send span under it, and the message names the send span.
func TestPublishStartsRootSpanWhenTracingIsOn(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	otlp := otlptest.Start(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("TRACEPARENT", "")

	if code, out, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url); code != 0 {
		t.Fatalf("publish: exit %d %s %s", code, out, stderr)
	}
	// The command flushes its spans before it returns.
	deadline := time.Now().Add(10 * time.Second)
	var spans []otlptest.Span
	for len(spans) < 2 && time.Now().Before(deadline) {
		spans = otlp.Spans()
		time.Sleep(20 * time.Millisecond)
	}
	if errs := otlp.Errors(); len(errs) > 0 {
		t.Fatalf("OTLP receiver refused exports: %v", errs)
	}
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want the command's and the send: %+v", len(spans), spans)
	}
	root, send := spans[0], spans[1]
	if root.Name != "setrelay publish" || root.ParentID != "" || root.Service != "setrelay" {
		t.Errorf("root span %+v", root)
	}
	if send.Name != "send "+queue.IntentSubject || send.ParentID != root.SpanID || send.TraceID != root.TraceID {
		t.Errorf("send span %+v not under root %s", send, root.SpanID)
	}
	want := "00-" + send.TraceID + "-" + send.SpanID + "-01"
	if got := firstIntent(t, js, 1).Header.Get(queue.HeaderTraceparent); got != want {
		t.Errorf("message traceparent %q, want %q", got, want)
	}
}
