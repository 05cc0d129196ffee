package push

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Under a recording span, Push starts a "push" client span; the push
// request carries its traceparent, and the token request the one of the
// token span under it. Without a recording span neither carries anything.
func TestPushPropagatesTraceContext(t *testing.T) {
	ts := newTokenServer(t, false)
	rc := newReceiver(t, false, nil)
	c, _ := newTestClient(t, oauthConfig(rc, ts))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "attempt", trace.WithSpanKind(trace.SpanKindConsumer))
	if r := c.Push(ctx, []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("push: %+v", r)
	}
	span.End()

	var token, push sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "token":
			token = s
		case "push":
			push = s
		}
	}
	if token == nil || push == nil {
		t.Fatalf("want a push and a token span, got %d spans", len(rec.Ended()))
	}
	if push.Parent().SpanID() != span.SpanContext().SpanID() || push.SpanKind() != trace.SpanKindClient {
		t.Errorf("push span parent %v kind %v", push.Parent().SpanID(), push.SpanKind())
	}
	if token.Parent().SpanID() != push.SpanContext().SpanID() || token.SpanKind() != trace.SpanKindClient {
		t.Errorf("token span parent %v kind %v", token.Parent().SpanID(), token.SpanKind())
	}
	attrs := map[string]string{}
	for _, kv := range push.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["http.response.status_code"] != "202" || attrs["server.address"] != "127.0.0.1" || attrs["setrelay.outcome"] != "delivered" ||
		attrs["setrelay.receiver"] != "test-rcv" || attrs["http.request.method"] != "POST" {
		t.Errorf("push span attributes %v", attrs)
	}
	ts.mu.Lock()
	tokenTP := ts.last.Header.Get("Traceparent")
	ts.mu.Unlock()
	if want := "00-" + token.SpanContext().TraceID().String() + "-" + token.SpanContext().SpanID().String() + "-01"; tokenTP != want {
		t.Errorf("token request traceparent %q, want the token span's %q", tokenTP, want)
	}
	reqs := rc.recorded()
	if len(reqs) != 1 {
		t.Fatalf("%d push requests", len(reqs))
	}
	if got, want := reqs[0].header.Get("Traceparent"), "00-"+push.SpanContext().TraceID().String()+"-"+push.SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("push request traceparent %q, want the push span's %q", got, want)
	}

	// Untraced: no header at all (and the cached token means no fetch).
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("push: %+v", r)
	}
	if reqs := rc.recorded(); len(reqs) != 2 || reqs[1].header.Get("Traceparent") != "" {
		t.Errorf("untraced push sent traceparent %q", reqs[len(reqs)-1].header.Get("Traceparent"))
	}
}
