package worker

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// minuteCount counts events over the last minute in one-second slots, for
// `setrelay status` ("delivered in the last minute"). It is lock-free so
// the delivered path stays cheap; a count may be lost when two goroutines
// open the same new second at once, which a status display can bear.
type minuteCount struct {
	slots [60]struct {
		sec atomic.Int64 // the Unix second the count belongs to
		n   atomic.Int64
	}
}

func (m *minuteCount) add(now time.Time) {
	sec := now.Unix()
	s := &m.slots[sec%60]
	if s.sec.Load() != sec && s.sec.Swap(sec) != sec {
		s.n.Store(0)
	}
	s.n.Add(1)
}

// last returns the count over the 60 seconds up to now.
func (m *minuteCount) last(now time.Time) int64 {
	cur := now.Unix()
	var total int64
	for i := range m.slots {
		s := &m.slots[i]
		if sec := s.sec.Load(); sec > cur-60 && sec <= cur {
			total += s.n.Load()
		}
	}
	return total
}

// recentCollector exports each receiver's deliveries over the last minute
// as a gauge computed at scrape time. In PromQL use
// increase(setrelay_deliveries_total[1m]); this is for tools that read one
// scrape, like `setrelay status`.
type recentCollector struct {
	desc *prometheus.Desc
	rcvs []*rcv
	now  func() time.Time
}

func newRecentCollector(rcvs []*rcv, now func() time.Time) *recentCollector {
	return &recentCollector{
		desc: prometheus.NewDesc("setrelay_receiver_delivered_last_minute",
			"SETs this process delivered to the receiver in the last 60 seconds (for 'setrelay status'; in PromQL use increase(setrelay_deliveries_total[1m])).",
			[]string{"receiver"}, nil),
		rcvs: rcvs,
		now:  now,
	}
}

func (c *recentCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *recentCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for _, r := range c.rcvs {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(r.recent.last(now)), r.Name)
	}
}

// registerRecent registers the collector; a second pool on the same
// registry (tests, a restarted pool) keeps the first one's.
func registerRecent(reg prometheus.Registerer, c *recentCollector) error {
	if reg == nil {
		return nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return nil
		}
		return err
	}
	return nil
}
