package push

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Under a recording span, the push request and the token request carry
// traceparent: the token request's names the token span, the push
// request's the caller's span. Without one, neither carries anything.
func TestPushPropagatesTraceContext(t *testing.T) {
	ts := newTokenServer(t, false)
	rc := newReceiver(t, false, nil)
	c, _ := newTestClient(t, oauthConfig(rc, ts))

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "push", trace.WithSpanKind(trace.SpanKindClient))
	if r := c.Push(ctx, []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("push: %+v", r)
	}
	span.End()

	var token sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "token" {
			token = s
		}
	}
	if token == nil {
		t.Fatal("no token span for the fetch")
	}
	if token.Parent().SpanID() != span.SpanContext().SpanID() || token.SpanKind() != trace.SpanKindClient {
		t.Errorf("token span parent %v kind %v", token.Parent().SpanID(), token.SpanKind())
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
	if got, want := reqs[0].header.Get("Traceparent"), "00-"+span.SpanContext().TraceID().String()+"-"+span.SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("push request traceparent %q, want the caller's span %q", got, want)
	}

	// Untraced: no header at all (and the cached token means no fetch).
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
		t.Fatalf("push: %+v", r)
	}
	if reqs := rc.recorded(); len(reqs) != 2 || reqs[1].header.Get("Traceparent") != "" {
		t.Errorf("untraced push sent traceparent %q", reqs[len(reqs)-1].header.Get("Traceparent"))
	}
}
