package worker

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
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

func benchPipeline(b *testing.B, alg jose.SignatureAlgorithm) {
	qcfg := queue.Config{StoreDir: b.TempDir(), Listen: "127.0.0.1:-1", MaxAckPending: 10000}
	srv, err := queue.StartEmbedded(qcfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	nc, err := queue.ConnectInProcess(srv, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := queue.Provision(ctx, js, qcfg, []string{"bench"}); err != nil {
		b.Fatal(err)
	}
	rsrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rsrv.Close()

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

	pad := strings.Repeat("p", 120)
	for i := 0; i < b.N; i++ {
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
			Txn: "txn-" + pad,
		}
		data, err := queue.Encode(in, intent.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync(queue.IntentSubject, data); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()

	p, err := New(Config{Concurrency: 64, Receivers: []Receiver{{
		Name: "bench", Consumer: cons, Profile: (&env{}).profile("bench"), Signer: sig, Pusher: pc,
	}}}, Deps{JS: js, Log: log, Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	stream, err := js.Stream(ctx, queue.IntentStream)
	if err != nil {
		b.Fatal(err)
	}
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
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
