package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// ScopeName is the instrumentation scope of setrelay's spans.
const ScopeName = "github.com/setrelay/setrelay"

// Provider is the process's tracing: either off (the zero value) or an SDK
// tracer provider exporting as the OTEL_* variables say.
type Provider struct {
	sdk *sdktrace.TracerProvider
}

// Enabled reports whether the standard environment turns tracing on: an
// exporter is named (other than "none") or an OTLP endpoint is set, and
// OTEL_SDK_DISABLED is not "true". getenv is os.Getenv outside tests.
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) {
	case "none":
		return false
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	default:
		return true
	}
}

// ErrEnvironment marks a Setup failure caused by the OTEL_* variables
// themselves (an unknown exporter or protocol): the operator's to fix, so
// the CLI exits with status 2 rather than 1.
var ErrEnvironment = errors.New("tracing: the OTEL_* environment is not usable")

var errorHandlerOnce sync.Once

// Setup builds the Provider from the OTEL_* environment. When tracing is
// not enabled it returns the off Provider and no error. version is the
// service.version resource attribute; OTEL_SERVICE_NAME and
// OTEL_RESOURCE_ATTRIBUTES override the defaults. Exporter failures later
// on are logged on log (once per process: OpenTelemetry's error handler is
// global), never returned to the delivery path.
func Setup(ctx context.Context, version string, log *zap.Logger) (*Provider, error) {
	if !Enabled(os.Getenv) {
		return &Provider{}, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_PROTOCOL: %w (use otlp, console or none; grpc or http/protobuf)", ErrEnvironment, err)
	}
	if autoexport.IsNoneSpanExporter(exp) {
		return &Provider{}, nil
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("setrelay"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last, so OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: OTEL_RESOURCE_ATTRIBUTES: %w", err)
	}
	if log != nil {
		errorHandlerOnce.Do(func() {
			l := log.Named("otel")
			otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
				l.Warn("exporting traces failed; deliveries are not affected", zap.Error(err))
			}))
		})
	}
	// The sampler comes from OTEL_TRACES_SAMPLER / _ARG (default: parent
	// based, always on), the batching from OTEL_BSP_*.
	return &Provider{sdk: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// NewProvider wraps an SDK tracer provider built by the caller (a test, or
// a program embedding setrelay with its own exporter). nil is off.
func NewProvider(tp *sdktrace.TracerProvider) *Provider { return &Provider{sdk: tp} }

// Enabled reports whether spans are recorded and exported.
func (p *Provider) Enabled() bool { return p != nil && p.sdk != nil }

// TracerProvider returns the provider to start spans from, or nil when
// tracing is off: callers then skip span work entirely, which is cheaper
// than starting no-op spans on every message.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if !p.Enabled() {
		return nil
	}
	return p.sdk
}

// Tracer is TracerProvider().Tracer(ScopeName), or nil when off.
func (p *Provider) Tracer() trace.Tracer {
	if !p.Enabled() {
		return nil
	}
	return p.sdk.Tracer(ScopeName)
}

// Shutdown exports the spans still buffered and stops the exporter. It is
// safe on the off Provider and on nil.
func (p *Provider) Shutdown(ctx context.Context) error {
	if !p.Enabled() {
		return nil
	}
	if err := p.sdk.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// ChildSpan starts a span under the recording span in ctx, from that span's
// own provider, and returns ctx unchanged and a nil span when ctx holds no
// recording span. Library code (queue, push) uses it so that it needs no
// tracer of its own and costs one context lookup when tracing is off.
func ChildSpan(ctx context.Context, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, nil
	}
	return parent.TracerProvider().Tracer(ScopeName).Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
}
