package main

import (
	"context"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/tracing"
)

// traceFlags give a producer command (publish, backfill) the trace its
// intents belong to.
type traceFlags struct {
	traceparent string
}

// traceFlushTimeout bounds exporting a one-shot command's spans at exit.
const traceFlushTimeout = 5 * time.Second

func (tf *traceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&tf.traceparent, "traceparent", "",
		"W3C traceparent of the caller's trace (default: the TRACEPARENT environment variable, with TRACESTATE); "+
			"when tracing is on (OTEL_* variables) a span of this command is started in it, or in a new trace without one")
}

// start returns the command's context carrying its trace: the given
// traceparent as the remote parent and, when the OTEL_* variables turn
// tracing on, a span named name under it (a root span when none was
// given). The intents it publishes carry that context. finish ends the span
// with the command's error and exports what was recorded.
func (tf *traceFlags) start(ctx context.Context, log *zap.Logger, name string) (_ context.Context, finish func(error), err error) {
	tp, ts := tf.traceparent, ""
	if tp == "" {
		tp, ts = os.Getenv("TRACEPARENT"), os.Getenv("TRACESTATE")
	}
	if tp != "" {
		pctx := tracing.ContextWithTraceparent(ctx, tp, ts)
		switch {
		case trace.SpanContextFromContext(pctx).IsValid():
			ctx = pctx
		case tf.traceparent != "":
			return ctx, nil, usageErrorf("--traceparent %q is not a W3C traceparent: use 00-<32 hex digits trace id>-<16 hex digits parent id>-<2 hex digits flags>, lowercase", tp)
		default:
			log.Warn("ignoring TRACEPARENT: not a W3C traceparent (00-<trace id>-<parent id>-<flags>)", zap.String("traceparent", tp))
		}
	}
	prov, err := tracing.Setup(ctx, buildVersion(), log)
	if err != nil {
		return ctx, nil, usageErrorf("%w", err)
	}
	if !prov.Enabled() {
		return ctx, func(error) {}, nil
	}
	ctx, span := prov.Tracer().Start(ctx, name)
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "command failed")
		}
		span.End()
		sctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
		defer cancel()
		if err := prov.Shutdown(sctx); err != nil {
			log.Warn("exporting this command's spans failed", zap.Error(err))
		}
	}, nil
}
