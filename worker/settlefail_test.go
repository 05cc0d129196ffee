package worker

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// TestFailedAckIsCounted: the connection the pool settles on is lost while
// a push is in flight, so the Ack of a delivered SET cannot be sent. The
// intent is redelivered (at least once), and the failure shows in a metric
// an operator can alert on, not only in a log line.
func TestFailedAckIsCounted(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	nc := e.connect()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc.Close() // the relay's NATS connection goes while the receiver answers
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	reg := prometheus.NewRegistry()
	stop := e.run(Config{Concurrency: 1, Receivers: []Receiver{e.spec(js, "rp", srv.URL)}}, js, reg)
	e.publish(sessionRevoked("ack-lost"))
	failed := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "setrelay_settle_failures_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["receiver"] == "rp" && labels["op"] == "ack" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	eventually(t, 10*time.Second, "the failed ack counted", func() bool { return failed() == 1 })
	stop()
	if n := e.intentsLeft(); n != 1 {
		t.Errorf("%d intents left after the ack was lost, want 1 (redelivered later)", n)
	}
}
