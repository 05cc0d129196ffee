package worker

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/tracing"
)

// Span outcomes (setrelay.outcome) of one delivery attempt: what the worker
// did with the message.
const (
	outcomeDelivered    = "delivered"
	outcomeRetry        = "retry"
	outcomeDeadLettered = "dead_lettered"
	outcomeSkipped      = "skipped"
	outcomeHandedBack   = "handed_back"
	outcomeBlocked      = "blocked"
)

// Stage span names under an attempt. The push and token spans are the push
// client's (push.Client.Push), under the attempt's context.
const (
	stageDecode = "decode"
	stageBuild  = "build"
	stageSign   = "sign"
)

// attemptTrace is the span of one delivery attempt, the parent of its stage
// spans. A nil *attemptTrace is tracing off: every method is then a no-op
// that allocates nothing, so handle calls them unconditionally.
//
// Spans never carry a subject identifier, a claim value (the jti aside) or
// an error text, which may quote either: failures are recorded as reason
// codes (setrelay.reason, error.type).
type attemptTrace struct {
	span   trace.Span
	tracer trace.Tracer
}

// startAttempt continues the producer's trace from the message's headers
// with a consumer span for this delivery attempt. With tracing off it only
// forwards a producer's trace context, so the receiver still sees it as
// W3C Trace Context asks of a component that does not trace; a message
// without one costs a map lookup.
func (p *Pool) startAttempt(ctx context.Context, r *rcv, j *job, attempt int) (context.Context, *attemptTrace) {
	h := j.msg.Headers()
	if p.tracer == nil {
		if len(h[tracing.HeaderTraceparent]) > 0 {
			return tracing.Extract(ctx, h), nil
		}
		return ctx, nil
	}
	ctx = tracing.Extract(ctx, h)
	// The logical destination, not the slot subject: 1024 span names
	// would defeat grouping by name.
	subject := queue.LogicalSubject(j.msg.Subject())
	ctx, span := p.tracer.Start(ctx, "process "+subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemKey.String(queue.MessagingSystem),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(subject),
			semconv.MessagingConsumerGroupName(r.consumer),
			semconv.MessagingMessageBodySize(len(j.data)),
			attribute.String("setrelay.receiver", r.Name),
			attribute.Int("setrelay.attempt", attempt),
			attribute.Int64("setrelay.stream_seq", int64(j.seq)),
		))
	return ctx, &attemptTrace{span: span, tracer: p.tracer}
}

// decoded records the intent id and the SET's jti once they are known.
func (t *attemptTrace) decoded(r *rcv, j *job) {
	if t == nil {
		return
	}
	t.span.SetAttributes(
		semconv.MessagingMessageID(j.intentID),
		attribute.String("setrelay.jti", set.JTI(j.intentID, r.Name, j.replayOf)),
	)
}

// stage starts a child span for one step (decode, build, sign); end it
// with endStage.
func (t *attemptTrace) stage(ctx context.Context, name string) trace.Span {
	if t == nil {
		return nil
	}
	_, s := t.tracer.Start(ctx, name)
	return s
}

// endStage ends a stage span; reason is the failure's code, "" on success.
func endStage(s trace.Span, reason string) {
	if s == nil {
		return
	}
	if reason != "" {
		s.SetAttributes(semconv.ErrorTypeKey.String(reason))
		s.SetStatus(codes.Error, reason)
	}
	s.End()
}

// settled records what became of the message on this attempt: the
// Action that was carried out.
func (t *attemptTrace) settled(act Action) {
	if t == nil {
		return
	}
	outcome := outcomeOf(act.Kind)
	t.span.SetAttributes(attribute.String("setrelay.outcome", outcome))
	if act.Reason != "" && act.Kind != Ack { // an Ack's reason is "delivered" again
		t.span.SetAttributes(attribute.String("setrelay.reason", act.Reason))
	}
	switch act.Kind {
	case NakDelay, DeadLetter, Block:
		t.span.SetAttributes(semconv.ErrorTypeKey.String(act.Reason))
		t.span.SetStatus(codes.Error, act.Reason)
	}
}

// outcomeOf names an ActionKind for setrelay.outcome.
func outcomeOf(k ActionKind) string {
	switch k {
	case Ack:
		return outcomeDelivered
	case Skip:
		return outcomeSkipped
	case NakDelay:
		return outcomeRetry
	case HandBack:
		return outcomeHandedBack
	case Block:
		return outcomeBlocked
	case DeadLetter:
		return outcomeDeadLettered
	}
	return "unknown"
}

// end ends the attempt span.
func (t *attemptTrace) end() {
	if t == nil {
		return
	}
	t.span.End()
}

// observe records v on o with the trace id as an exemplar when the attempt
// is sampled; Prometheus shows exemplars when it negotiates OpenMetrics,
// linking a latency bucket to a trace.
func (t *attemptTrace) observe(o prometheus.Observer, v float64) {
	if t != nil {
		if sc := t.span.SpanContext(); sc.IsSampled() {
			if eo, ok := o.(prometheus.ExemplarObserver); ok {
				eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	o.Observe(v)
}

// failed is reason when err is not nil, else "": a stage's failure code.
func failed(err error, reason string) string {
	if err != nil {
		return reason
	}
	return ""
}
