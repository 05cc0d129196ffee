package signer

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/internal/promreg"
)

// Sign error reasons, the values of setrelay_sign_errors_total's reason
// label. They follow the error classes, so an alert can tell a throttled
// KMS (wait) from a disabled key (page someone).
const (
	ReasonTransient   = "transient"    // ErrTransient: throttled, busy, session lost, unreachable
	ReasonKeyUnusable = "key_unusable" // ErrKeyUnusable: disabled, deleted, access denied
	ReasonRateLimited = "rate_limited" // keys[].max_sign_rate would be exceeded
	ReasonOther       = "other"        // anything else (a bug, an unexpected device answer)
)

// Metrics are the signing metrics, shared by every Signer of a process and
// labelled by key id (never by anything secret).
type Metrics struct {
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers setrelay_sign_errors_total{key,reason} and
// setrelay_sign_duration_seconds{key} on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_sign_errors_total",
			Help: "SETs that could not be signed, by key id and reason (transient: KMS throttling or an HSM busy or without a session, retried; key_unusable: the key is disabled, deleted or denied, receivers using it are blocked; rate_limited: keys[].max_sign_rate reached; other).",
		}, []string{"key", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "setrelay_sign_duration_seconds",
			Help:    "Time to sign one SET, by key id: microseconds for a file key, a round trip for an HSM or KMS key.",
			Buckets: []float64{0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"key"}),
	}
	// Shared with an earlier registration on the same registry (a second
	// relay started in one process, as tests and the demo do).
	var err error
	if m.errors, err = promreg.Register(reg, m.errors); err != nil {
		return nil, fmt.Errorf("register signing metrics: %w", err)
	}
	if m.duration, err = promreg.Register(reg, m.duration); err != nil {
		return nil, fmt.Errorf("register signing metrics: %w", err)
	}
	return m, nil
}

// reason classifies a signing error for the reason label.
func reason(err error) string {
	var rl *rateLimitedError
	switch {
	case errors.As(err, &rl):
		return ReasonRateLimited
	case errors.Is(err, ErrKeyUnusable):
		return ReasonKeyUnusable
	case errors.Is(err, ErrTransient):
		return ReasonTransient
	default:
		return ReasonOther
	}
}

// rateLimitedError is the ErrTransient a Signer returns when its
// max_sign_rate would make the caller wait too long.
type rateLimitedError struct{ kid string }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("key %q: max_sign_rate reached; the SET is retried later", e.kid)
}

func (e *rateLimitedError) Unwrap() error { return ErrTransient }

// Errors is setrelay_sign_errors_total, for tests and dashboards' tests.
func (m *Metrics) Errors() *prometheus.CounterVec { return m.errors }
