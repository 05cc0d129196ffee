// Package tracing sets up OpenTelemetry tracing for setrelay and carries the
// W3C trace context (traceparent, tracestate) in NATS message headers.
//
// Tracing is configured only by the standard OTEL_* environment variables
// (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER,
// OTEL_SERVICE_NAME, ...). With none of them set it is off: Setup returns a
// Provider whose TracerProvider is nil, and the hot paths check for that and
// do no span work at all. A trace context a producer put on a message is
// still forwarded unchanged to the receiver, as W3C Trace Context asks of a
// component that does not itself trace.
//
// Libraries inside setrelay (queue, push) never hold a tracer: they create a
// child span only when the span in the caller's context is recording, from
// that span's own TracerProvider, so they cost nothing when tracing is off
// and need no configuration when it is on.
package tracing
