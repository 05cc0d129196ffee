// Package promreg registers Prometheus collectors so that building a
// component twice on one registry (a restarted worker pool, several push
// clients, tests) reuses the instruments already there instead of failing.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or, when an equal collector
// (same names, help and labels) is already registered, returns that one so
// every caller counts into the same series. Any other registration error,
// such as the same name with different labels, is returned as is.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	var zero C
	return zero, err
}
