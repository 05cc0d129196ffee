package worker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// An intent's receivers are producer text (any 128 characters), and the
// names no receiver has become label values of
// setrelay_intents_unknown_receiver_total. A name no receiver can have
// (receiver names are [A-Za-z0-9_-]{1,64}) must not carry ESC sequences
// or newlines into /metrics, nor 128-character junk into each of its 100
// series: it is counted as "invalid".
func TestUnknownReceiverLabelIsNeverProducerJunk(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"btea", "\x1b]0;owned\x07", "a\nsetrelay_fake_metric 1", "x y", string(make([]byte, 65))} {
		m.unknownReceiver(name)
	}
	if got := metricValueLabel(t, reg, "setrelay_intents_unknown_receiver_total", "receiver", "btea"); got != 1 {
		t.Fatalf("btea counted %v times, want 1", got)
	}
	if got := metricValueLabel(t, reg, "setrelay_intents_unknown_receiver_total", "receiver", "invalid"); got != 4 {
		t.Fatalf("invalid names counted %v times, want 4", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "setrelay_intents_unknown_receiver_total" {
			continue
		}
		if n := len(mf.GetMetric()); n != 2 {
			t.Fatalf("%d series, want 2 (btea, invalid)", n)
		}
	}
}
