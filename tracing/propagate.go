package tracing

import (
	"context"
	"net/http"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Header names of W3C Trace Context, in NATS headers exactly as written:
// unlike HTTP, NATS header names are case-sensitive.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// w3c is W3C Trace Context only: setrelay's messages carry that format
// whatever propagators a producer's process uses for its own RPCs.
var w3c = propagation.TraceContext{}

// natsCarrier adapts nats.Header to the propagator with exact-case keys.
type natsCarrier nats.Header

func (c natsCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c natsCarrier) Set(key, value string) { c[key] = []string{value} }

func (c natsCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes traceparent (and tracestate, if any) for the span context
// in ctx into h. Without a valid span context in ctx it writes nothing.
func Inject(ctx context.Context, h nats.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	w3c.Inject(ctx, natsCarrier(h))
}

// Extract returns ctx with the remote span context from h's traceparent and
// tracestate as the parent of spans started from it. A missing or malformed
// traceparent leaves ctx as it is.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h[HeaderTraceparent]) == 0 {
		return ctx
	}
	return w3c.Extract(ctx, natsCarrier(h))
}

// ContextWithTraceparent is Extract for values given by hand (a
// --traceparent flag, the TRACEPARENT and TRACESTATE environment variables).
func ContextWithTraceparent(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	h := nats.Header{HeaderTraceparent: {traceparent}}
	if tracestate != "" {
		h[HeaderTracestate] = []string{tracestate}
	}
	return w3c.Extract(ctx, natsCarrier(h))
}

// Traceparent formats the span context in ctx as a traceparent, or "".
func Traceparent(ctx context.Context) string {
	h := nats.Header{}
	Inject(ctx, h)
	return natsCarrier(h).Get(HeaderTraceparent)
}

// Headers returns the trace context headers of h (nil if none), to keep them
// with a record of the message, a dead letter for instance.
func Headers(h nats.Header) nats.Header {
	var out nats.Header
	for _, k := range []string{HeaderTraceparent, HeaderTracestate} {
		if v := h[k]; len(v) > 0 && v[0] != "" {
			if out == nil {
				out = nats.Header{}
			}
			out[k] = []string{v[0]}
		}
	}
	return out
}

// InjectHTTP writes traceparent (and tracestate) for the span context in ctx
// into an outgoing HTTP request's headers, so a receiver that traces joins
// the trace. Without a valid span context in ctx it writes nothing.
func InjectHTTP(ctx context.Context, h http.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	w3c.Inject(ctx, propagation.HeaderCarrier(h))
}
