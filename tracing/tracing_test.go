package tracing

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestEnabledFollowsTheStandardVariables(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, true},
		{"exporter named", map[string]string{"OTEL_TRACES_EXPORTER": "console"}, true},
		{"exporter none wins", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{"sdk disabled wins", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, false},
		{"sampler alone is not enough", map[string]string{"OTEL_TRACES_SAMPLER": "always_on"}, false},
	}
	for _, tt := range tests {
		if got := Enabled(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("%s: Enabled = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSetupIsOffWithoutTheVariables(t *testing.T) {
	for _, k := range []string{"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} {
		t.Setenv(k, "")
	}
	p, err := Setup(context.Background(), "test", nil)
	if err != nil || p.Enabled() || p.TracerProvider() != nil || p.Tracer() != nil || p.Shutdown(context.Background()) != nil {
		t.Errorf("Setup without OTEL_*: %+v, %v; want off", p, err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "bogus")
	if _, err := Setup(context.Background(), "test", nil); !errors.Is(err, ErrEnvironment) {
		t.Errorf("an unknown exporter: err %v, want ErrEnvironment (the CLI's exit status 2)", err)
	}
}

func TestTraceContextRoundTrips(t *testing.T) {
	const tp, ts = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=1,b=2"
	ctx := ContextWithTraceparent(context.Background(), tp, ts)
	h := nats.Header{}
	Inject(ctx, h)
	if h.Get(HeaderTraceparent) != tp || h.Get(HeaderTracestate) != ts {
		t.Fatalf("injected %v", h)
	}
	back := Extract(context.Background(), h)
	if Traceparent(back) != tp {
		t.Errorf("extracted %q", Traceparent(back))
	}
	hh := http.Header{}
	InjectHTTP(back, hh)
	if hh.Get("Traceparent") != tp || hh.Get("Tracestate") != ts {
		t.Errorf("HTTP headers %v", hh)
	}
	if kept := Headers(nats.Header{HeaderTraceparent: {tp}, "Nats-Msg-Id": {"x"}}); len(kept) != 1 || kept.Get(HeaderTraceparent) != tp {
		t.Errorf("Headers kept %v", kept)
	}

	// Malformed or absent: nothing is invented.
	for _, bad := range []string{"", "00-xyz-00f067aa0ba902b7-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"} {
		h := nats.Header{}
		Inject(ContextWithTraceparent(context.Background(), bad, ""), h)
		if len(h) != 0 {
			t.Errorf("traceparent %q injected %v", bad, h)
		}
	}
	if _, span := ChildSpan(context.Background(), "x", 0); span != nil {
		t.Error("ChildSpan without a recording parent started a span")
	}
}
