package push

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/setrelay/setrelay/internal/promreg"
)

// Metrics are the push package's Prometheus instruments. A nil *Metrics is
// valid and records nothing, so tests and tools can pass nil. Labels are the
// receiver name, outcome and reason code: never anything from a token, a
// secret or a receiver's body.
type Metrics struct {
	tokenFetches *prometheus.CounterVec
	pushSeconds  *prometheus.HistogramVec
	pushResults  *prometheus.CounterVec
	tokenExpiry  *prometheus.GaugeVec
}

// NewMetrics creates the instruments and registers them with reg (nil: not
// registered). Registering twice with the same registry reuses the
// instruments already there, so several clients can share one registry.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		tokenFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Subsystem: "push", Name: "token_fetches_total",
			Help: "Requests to receivers' OAuth token endpoints, by receiver and result (ok, error, config_error).",
		}, []string{"receiver", "result"}),
		pushSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "setrelay", Subsystem: "push", Name: "duration_seconds",
			Help:    "Time spent in one Push (token, up to two HTTP attempts), by receiver and outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
		}, []string{"receiver", "outcome"}),
		pushResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Subsystem: "push", Name: "results_total",
			Help: "Push results by receiver, outcome and reason code.",
		}, []string{"receiver", "outcome", "reason"}),
		tokenExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "setrelay", Subsystem: "push", Name: "token_expiry_timestamp_seconds",
			Help: "When the receiver's current access token expires (Unix time), as its token endpoint said; 'setrelay status' shows the time left.",
		}, []string{"receiver"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.tokenFetches, err = promreg.Register(reg, m.tokenFetches)
	if err != nil {
		return nil, err
	}
	m.pushSeconds, err = promreg.Register(reg, m.pushSeconds)
	if err != nil {
		return nil, err
	}
	m.pushResults, err = promreg.Register(reg, m.pushResults)
	if err != nil {
		return nil, err
	}
	m.tokenExpiry, err = promreg.Register(reg, m.tokenExpiry)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) tokenFetch(receiver, result string) {
	if m == nil {
		return
	}
	m.tokenFetches.WithLabelValues(receiver, result).Inc()
}

// tokenExpires records a new token's expiry; a token without one records
// nothing.
func (m *Metrics) tokenExpires(receiver string, expiry time.Time) {
	if m == nil || expiry.IsZero() {
		return
	}
	m.tokenExpiry.WithLabelValues(receiver).Set(float64(expiry.UnixNano()) / 1e9)
}

// deliveredMetrics are one receiver's series for a delivered push, looked
// up once: every other outcome is rare, but this one is paid per SET, and a
// label lookup hashes the labels and takes the vector's lock.
type deliveredMetrics struct {
	seconds prometheus.Observer
	results prometheus.Counter
}

func (m *Metrics) forDelivered(receiver string) *deliveredMetrics {
	if m == nil {
		return nil
	}
	o := Delivered.String()
	return &deliveredMetrics{
		seconds: m.pushSeconds.WithLabelValues(receiver, o),
		results: m.pushResults.WithLabelValues(receiver, o, ReasonDelivered),
	}
}

func (m *Metrics) push(receiver string, dm *deliveredMetrics, r *Result, d time.Duration) {
	if m == nil {
		return
	}
	if dm != nil && r.Outcome == Delivered && r.Reason == ReasonDelivered {
		dm.seconds.Observe(d.Seconds())
		dm.results.Inc()
		return
	}
	o := r.Outcome.String()
	m.pushSeconds.WithLabelValues(receiver, o).Observe(d.Seconds())
	m.pushResults.WithLabelValues(receiver, o, r.Reason).Inc()
}
