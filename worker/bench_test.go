package worker

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/otlptest"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// BenchmarkPipeline measures end-to-end delivery as in production
// (validation, metrics, JSON info logging): b.N intents are stored in an
// embedded JetStream first, then one pool delivers them to a loopback
// receiver that answers 202, as /work/shared/bench/baseline does.
//
//	go test -run '^$' -bench Pipeline -benchtime 20000x ./worker/
//
// It reports SETs/s and CPU time per delivered SET (user+system of the
// whole process, so the embedded server and the receiver are included, as
// in the baseline's single-process mode).
func BenchmarkPipeline(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) { benchPipeline(b, alg) })
	}
}

// benchRig is an embedded JetStream with one receiver's consumer, a
// loopback receiver answering 202, and a pool configured as in production.
type benchRig struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	pool   *Pool
	reg    *prometheus.Registry
}

func newBenchRig(b *testing.B, alg jose.SignatureAlgorithm, onPush func(body []byte)) *benchRig {
	b.Helper()
	return newTracedBenchRig(b, alg, onPush, nil)
}

// newTracedBenchRig is newBenchRig with the pool tracing on tp (nil: off).
func newTracedBenchRig(b *testing.B, alg jose.SignatureAlgorithm, onPush func(body []byte), tp trace.TracerProvider) *benchRig {
	b.Helper()
	qcfg := queue.Config{StoreDir: b.TempDir(), Listen: "127.0.0.1:-1", MaxAckPending: 10000}
	srv, err := queue.StartEmbedded(qcfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := queue.ConnectInProcess(srv, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := queue.Provision(ctx, js, qcfg, []string{"bench"}); err != nil {
		b.Fatal(err)
	}
	rsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if onPush != nil {
			onPush(body)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(rsrv.Close)

	key, err := signer.GenerateKey(alg, "bench-key")
	if err != nil {
		b.Fatal(err)
	}
	sig, err := signer.New(key)
	if err != nil {
		b.Fatal(err)
	}
	// Production logging: JSON at info, one line per delivery.
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
	reg := prometheus.NewRegistry()
	pm, err := push.NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	pc, err := push.New(push.Config{Name: "bench", Endpoint: rsrv.URL + "/events", InsecureHTTP: true, MaxConns: 64}, log, pm)
	if err != nil {
		b.Fatal(err)
	}
	cons, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("bench"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(Config{Concurrency: 64, Receivers: []Receiver{{
		Name: "bench", Consumer: cons, Profile: (&env{}).profile("bench"), Signer: sig, Pusher: pc,
	}}}, Deps{JS: js, Log: log, Registerer: reg, Tracer: tp})
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, queue.IntentStream)
	if err != nil {
		b.Fatal(err)
	}
	return &benchRig{js: js, stream: stream, pool: p, reg: reg}
}

// benchIntent is about 500 bytes of JSON, like the baseline's.
func benchIntent(b *testing.B, i int) []byte {
	in := &intent.Intent{
		ID:      idN("bench", i),
		Type:    "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice.user@example.com"},
		Event: map[string]any{
			"initiating_entity": "policy",
			"reason_admin":      map[string]any{"en": "Landspeed Policy Violation: C076E82F"},
			"reason_user":       map[string]any{"en": "Access attempt from multiple regions."},
			"event_timestamp":   1767225599,
		},
		Txn: "txn-" + strings.Repeat("p", 120),
	}
	data, err := queue.Encode(in, intent.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkPipelineTraced is BenchmarkPipeline (ES256) with every
// delivery traced: 100 % sampling, batched OTLP/HTTP export to an
// in-process collector, as with OTEL_EXPORTER_OTLP_ENDPOINT set. Compare its
// cpu-us/SET with BenchmarkPipeline/ES256 from the same run.
func BenchmarkPipelineTraced(b *testing.B) {
	otlp := otlptest.Start(b)
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(otlp.URL+"/v1/traces"))
	if err != nil {
		b.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchPipelineWith(b, newTracedBenchRig(b, jose.ES256, nil, tp))
	// Everything recorded reached the collector.
	if err := tp.ForceFlush(context.Background()); err != nil {
		b.Fatal(err)
	}
	if errs := otlp.Errors(); len(errs) > 0 {
		b.Fatalf("collector refused exports: %v", errs)
	}
	b.ReportMetric(float64(len(otlp.Spans()))/float64(b.N), "spans/SET")
}

func benchPipeline(b *testing.B, alg jose.SignatureAlgorithm) {
	benchPipelineWith(b, newBenchRig(b, alg, nil))
}

func benchPipelineWith(b *testing.B, rig *benchRig) {
	js, stream, p := rig.js, rig.stream, rig.pool
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		if _, err := js.PublishAsync(queue.IntentSubject, benchIntent(b, i)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	cpu0, t0 := processCPU(), time.Now()
	go func() { done <- p.Run(runCtx) }()
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.State.Msgs == 0 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed, cpu := time.Since(t0), processCPU()-cpu0
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "SETs/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/SET")
	b.ReportMetric(metricValue(b, rig.reg, "setrelay_pull_requests_total", "bench")/float64(b.N), "pulls/SET")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLatency publishes at a fixed 1,000 intents/s for 5 s and reports
// the p50, p99 and max time from the publish call to the receiver answering
// 202 (ES256), and the pull requests per SET. b.N is ignored: run it with
// -benchtime 1x.
//
//	go test -run '^$' -bench Latency -benchtime 1x ./worker/
func BenchmarkLatency(b *testing.B) {
	const (
		rate     = 1000
		duration = 5 * time.Second
		total    = int(rate * duration / time.Second)
	)
	var (
		mu        sync.Mutex
		published = make(map[string]time.Time, total)
		latencies = make([]time.Duration, 0, total)
	)
	rig := newBenchRig(b, jose.ES256, func(body []byte) {
		now := time.Now()
		jti := jtiOfCompact(body)
		mu.Lock()
		if t0, ok := published[jti]; ok {
			latencies = append(latencies, now.Sub(t0))
			delete(published, jti)
		}
		mu.Unlock()
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rig.pool.Run(ctx) }()
	payloads := make([][]byte, total)
	for i := range payloads {
		payloads[i] = benchIntent(b, i)
	}

	b.ResetTimer()
	start := time.Now()
	for i := 0; i < total; i++ {
		// Publish on schedule, not in bursts: intent i is due at i ms.
		if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
			time.Sleep(d)
		}
		jti := set.JTI(idN("bench", i), "bench", "")
		mu.Lock()
		published[jti] = time.Now()
		mu.Unlock()
		if _, err := rig.js.PublishAsync(queue.IntentSubject, payloads[i]); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(latencies)
		mu.Unlock()
		if n == total {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d delivered", n, total)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	pct := func(q float64) float64 {
		return float64(latencies[int(q*float64(len(latencies)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
	b.ReportMetric(metricValue(b, rig.reg, "setrelay_pull_requests_total", "bench")/float64(total), "pulls/SET")
}

// jtiOfCompact pulls the jti out of a compact JWS without verifying it (the
// benchmark's receiver only times deliveries).
func jtiOfCompact(compact []byte) string {
	parts := bytes.SplitN(compact, []byte("."), 3)
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return ""
	}
	var c struct {
		JTI string `json:"jti"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.JTI
}
