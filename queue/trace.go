package queue

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/setrelay/setrelay/tracing"
)

// MessagingSystem is the messaging.system attribute of setrelay's spans.
// The semantic conventions list no value for NATS; "nats" is the one in use.
const MessagingSystem = "nats"

// startSend starts a producer span for one publish when the caller's
// context holds a recording span (a producer that traces, or the root span
// of `setrelay publish`), so that the message's traceparent names the
// publish itself. Otherwise it returns ctx and a no-op end, allocating
// nothing. The attributes name the subject and the intent id, never any
// of the intent's content.
func startSend(ctx context.Context, subject, id string, size int) (context.Context, func(error)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, func(error) {}
	}
	ctx, span := tracing.ChildSpan(ctx, "send "+subject, trace.SpanKindProducer,
		semconv.MessagingSystemKey.String(MessagingSystem),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("send"),
		semconv.MessagingDestinationName(subject),
		semconv.MessagingMessageID(id),
		semconv.MessagingMessageBodySize(size),
	)
	return ctx, func(err error) {
		if err != nil {
			// A code, not the error's text: spans carry no free text.
			span.SetAttributes(semconv.ErrorTypeKey.String(publishErrorType(err)))
			span.SetStatus(codes.Error, "publish failed")
		}
		span.End()
	}
}

// publishErrorType names a publish failure for error.type.
func publishErrorType(err error) string {
	switch {
	case errors.Is(err, ErrStreamFull):
		return "stream_full"
	case errors.Is(err, ErrNotProvisioned):
		return "not_provisioned"
	}
	return "publish_failed"
}
