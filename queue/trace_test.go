package queue_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/tracing"
)

const (
	testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testTracestate  = "vendor=opaque-value"
)

// A producer that traces gets a send span under its own, and the message
// carries that span's context: the worker's spans hang off the publish.
func TestPublishUnderRecordingSpanStartsProducerSpan(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	ctx, root := tp.Tracer("producer").Start(ctxT(t), "producer work")
	if _, err := queue.NewPublisher(env.js, optsNone).Publish(ctx, newIntent("traced-1")); err != nil {
		t.Fatal(err)
	}
	root.End()

	msgs := fetchAll(t, env.js, "govuk", 1, 5*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("got %d messages", len(msgs))
	}
	var send sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "send "+queue.IntentSubject {
			send = s
		}
	}
	if send == nil {
		t.Fatalf("no send span among %d ended spans", len(rec.Ended()))
	}
	if send.SpanKind() != trace.SpanKindProducer || send.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Errorf("send span kind %v parent %v, want producer under %v", send.SpanKind(), send.Parent().SpanID(), root.SpanContext().SpanID())
	}
	want := "00-" + send.SpanContext().TraceID().String() + "-" + send.SpanContext().SpanID().String() + "-01"
	if got := msgs[0].Headers().Get(queue.HeaderTraceparent); got != want {
		t.Errorf("traceparent %q, want the send span's %q", got, want)
	}
	attrs := map[string]string{}
	for _, kv := range send.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["messaging.system"] != "nats" || attrs["messaging.destination.name"] != queue.IntentSubject ||
		attrs["messaging.message.id"] != "traced-1" || attrs["messaging.operation.type"] != "send" {
		t.Errorf("send span attributes %v", attrs)
	}
}

// The batch publisher (backfill) carries the caller's trace context,
// tracestate included, on every message.
func TestBatchPublisherPropagatesTraceContext(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := tracing.ContextWithTraceparent(ctxT(t), testTraceparent, testTracestate)
	for _, id := range ids("batch-tp", 3) {
		if err := bp.Add(ctx, id, intentBytes(t, id), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, env.js, "govuk", 3, 5*time.Second)
	if len(msgs) != 3 {
		t.Fatalf("got %d messages", len(msgs))
	}
	for _, m := range msgs {
		if tp, ts := m.Headers().Get(queue.HeaderTraceparent), m.Headers().Get(tracing.HeaderTracestate); tp != testTraceparent || ts != testTracestate {
			t.Errorf("message headers traceparent %q tracestate %q", tp, ts)
		}
	}
}

// A dead letter keeps the trace context of the delivery that failed, shows
// it, and its replay carries it back onto the intents stream, so the
// replay's deliveries join the original trace.
func TestDeadLetterAndReplayKeepTraceContext(t *testing.T) {
	env := startEnv(t, testConfig(t), "acme")
	ctx := tracing.ContextWithTraceparent(ctxT(t), testTraceparent, testTracestate)
	dl := queue.DeadLetter{Receiver: "acme", Reason: "attempts_exhausted", StreamSeq: 9, IntentID: "tp-dl", Intent: intentBytes(t, "tp-dl"), Attempts: 3}
	if err := queue.PublishDeadLetter(ctx, env.js, dl); err != nil {
		t.Fatal(err)
	}
	d := queue.NewDLQ(env.js)
	list, err := d.List(ctxT(t), queue.Filter{Receiver: "acme"})
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	if list[0].Traceparent != testTraceparent || list[0].Tracestate != testTracestate {
		t.Errorf("listed dead letter trace context %q %q", list[0].Traceparent, list[0].Tracestate)
	}
	got, err := d.Get(ctxT(t), list[0].Seq)
	if err != nil || got.Traceparent != testTraceparent {
		t.Fatalf("Get: traceparent %q, %v", got.Traceparent, err)
	}

	// The operator's replay runs in a context of its own (or none): the
	// dead letter's trace context wins.
	other := queue.WithTraceparent(ctxT(t), "00-11111111111111111111111111111111-2222222222222222-01")
	if _, err := d.Replay(other, list[0].Seq); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, env.js, "acme", 1, 5*time.Second)
	if len(msgs) != 1 {
		t.Fatal("replay not delivered")
	}
	if tp, ts := msgs[0].Headers().Get(queue.HeaderTraceparent), msgs[0].Headers().Get(tracing.HeaderTracestate); tp != testTraceparent || ts != testTracestate {
		t.Errorf("replay headers traceparent %q tracestate %q, want the dead letter's", tp, ts)
	}
}
