package relay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// A quiet feed whose receiver goes down fails one intent's attempts in a
// row. With the default pause threshold the receiver is paused before that
// intent runs out of attempts, so the outage costs no dead letter however
// long it lasts, and the intent is delivered once the receiver is back.
func TestQuietReceiverOutagePausesBeforeDeadLettering(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	down.Store(true)
	var delivered atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered.Add(1)
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	cfg, _ := testConfig(t, srv.URL+"/events")
	r := &cfg.Receivers[0]
	r.Retry.Initial, r.Retry.Max, r.Retry.MaxAttempts = 20*time.Millisecond, 50*time.Millisecond, 6
	r.Pause.Threshold, r.Pause.Initial, r.Pause.Max = 0, 200*time.Millisecond, 200*time.Millisecond
	cfg.FillDefaults() // the threshold is derived from max_attempts, as for a config file without one

	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	nc, err := nats.Connect(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	in, err := intent.Decode([]byte(`{"id":"quiet-1","type":"risc.account-disabled","subject":{"format":"email","email":"q@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := queue.NewPublisher(js, intent.Options{}).Publish(ctx, in); err != nil {
		t.Fatal(err)
	}

	// Several times the intent's whole retry budget (6 attempts, at most
	// 50 ms apart) passes with the receiver down.
	time.Sleep(3 * time.Second)
	if n := testenv.StreamMsgs(t, js, queue.DLQStream); n != 0 {
		t.Fatalf("%d dead letters during the outage; the receiver should have been paused instead", n)
	}
	if p := pausesTotal(t, reg); p < 1 {
		t.Fatalf("the receiver was never paused (setrelay_pauses_total = %v)", p)
	}

	down.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	for delivered.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if delivered.Load() == 0 {
		t.Fatal("the intent was not delivered after the receiver came back")
	}
	if n := testenv.StreamMsgs(t, js, queue.DLQStream); n != 0 {
		t.Fatalf("%d dead letters after recovery, want 0", n)
	}
}

func pausesTotal(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if strings.HasSuffix(mf.GetName(), "pauses_total") {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
