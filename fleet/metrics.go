package fleet

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/internal/promreg"
)

type metrics struct {
	members  prometheus.Gauge
	admitted prometheus.Gauge
	rate     *prometheus.GaugeVec
	inFlight *prometheus.GaugeVec
	failures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "setrelay_fleet_members",
			Help: "Fleet size this process divides receiver limits by (live members of the SETRELAY_FLEET bucket, or more while a departed member is still counted).",
		}),
		admitted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "setrelay_fleet_admitted",
			Help: "1 once every other fleet member has made room for this process; 0 while it waits with no share.",
		}),
		rate: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "setrelay_fleet_rate_share",
			Help: "This process's share of the receiver's rate_limit, in SETs per second.",
		}, []string{"receiver"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "setrelay_fleet_in_flight_share",
			Help: "This process's share of the receiver's max_in_flight, in concurrent pushes.",
		}, []string{"receiver"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "setrelay_fleet_coordination_errors_total",
			Help: "Heartbeats that could not read or write the SETRELAY_FLEET bucket; the process keeps a reduced share meanwhile.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.members, err = promreg.Register(reg, m.members); err != nil {
		return nil, err
	}
	if m.admitted, err = promreg.Register(reg, m.admitted); err != nil {
		return nil, err
	}
	if m.rate, err = promreg.Register(reg, m.rate); err != nil {
		return nil, err
	}
	if m.inFlight, err = promreg.Register(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.failures, err = promreg.Register(reg, m.failures); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) observe(p Plan, limits map[string]Limits) {
	m.members.Set(float64(p.Size))
	if p.Admitted {
		m.admitted.Set(1)
	} else {
		m.admitted.Set(0)
	}
	m.shares(p.Shares, limits)
}

// shares sets the share gauges of the limits that are configured.
func (m *metrics) shares(s, limits map[string]Limits) {
	for name, l := range s {
		if limits[name].Rate > 0 {
			m.rate.WithLabelValues(name).Set(l.Rate)
		}
		if limits[name].InFlight > 0 {
			m.inFlight.WithLabelValues(name).Set(float64(l.InFlight))
		}
	}
}
