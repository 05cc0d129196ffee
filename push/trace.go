package push

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/setrelay/setrelay/tracing"
)

// Tracing in push is passive: the worker's span in the caller's context is
// propagated on the request (traceparent, tracestate), and a "token" span is
// started only for an actual token fetch under a recording span. With
// tracing off neither costs more than a context lookup.

// traceFetch starts the "token" span of a token fetch when ctx holds a
// recording span, and hands its context to the fetcher, whose request then
// carries it. The fetch runs under oauth2's ReuseTokenSource, which takes no
// context, hence the hand-over: when several callers wait for one fetch,
// the request carries the trace of the last one to arrive, and every
// caller's span covers its wait.
func (f *fetcher) traceFetch(ctx context.Context) func(error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return func(error) {}
	}
	_, span := tracing.ChildSpan(ctx, "token", trace.SpanKindClient,
		semconv.HTTPRequestMethodPost, semconv.ServerAddress(f.tokenHost()))
	sc := span.SpanContext()
	f.parent.Store(&sc)
	return func(err error) {
		if err != nil {
			// A code, not the error's text: the endpoint's description
			// is no business of a trace.
			reason := ReasonToken
			var te *TokenError
			if errors.As(err, &te) && te.Permanent {
				reason = ReasonTokenConfig
			}
			span.SetAttributes(semconv.ErrorTypeKey.String(reason))
			span.SetStatus(codes.Error, reason)
		}
		span.End()
	}
}

// traced gives the fetch's context the waiting caller's token span, if any.
func (f *fetcher) traced(ctx context.Context) context.Context {
	if sc := f.parent.Swap(nil); sc != nil {
		return trace.ContextWithSpanContext(ctx, *sc)
	}
	return ctx
}

func (f *fetcher) tokenHost() string {
	host, _ := hostPort(f.cc.TokenURL)
	return host
}

// traceTransport adds the trace context of each request's context to the
// request: the oauth2 library builds the token request itself.
type traceTransport struct{ base http.RoundTripper }

func (t traceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if trace.SpanContextFromContext(req.Context()).IsValid() {
		// A RoundTripper must not modify the caller's request.
		req = req.Clone(req.Context())
		tracing.InjectHTTP(req.Context(), req.Header)
	}
	return t.base.RoundTrip(req)
}

// tracePush starts the "push" client span of one Push when ctx holds a
// recording span; its context is what the request's traceparent names. The
// span carries the receiver's name, address and the outcome, never the SET.
func (c *Client) tracePush(ctx context.Context) (context.Context, func(Result)) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx, endNothing
	}
	ctx, span := tracing.ChildSpan(ctx, "push", trace.SpanKindClient,
		semconv.HTTPRequestMethodPost,
		semconv.ServerAddress(c.host),
		semconv.ServerPort(c.port),
		attribute.String("setrelay.receiver", c.name),
	)
	return ctx, func(r Result) {
		if r.Status != 0 {
			span.SetAttributes(semconv.HTTPResponseStatusCode(r.Status))
		}
		span.SetAttributes(
			attribute.String("setrelay.outcome", r.Outcome.String()),
			attribute.String("setrelay.reason", r.Reason),
			attribute.Int("setrelay.http_attempts", r.Attempts),
		)
		if r.Outcome != Delivered {
			span.SetAttributes(semconv.ErrorTypeKey.String(r.Reason))
			span.SetStatus(codes.Error, r.Reason)
		}
		span.End()
	}
}

func endNothing(Result) {}

// hostPort splits an endpoint URL into the server.address and server.port
// attributes (the port defaulted from the scheme).
func hostPort(raw string) (string, int) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", 0
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		port = 443
		if u.Scheme == "http" {
			port = 80
		}
	}
	return u.Hostname(), port
}
