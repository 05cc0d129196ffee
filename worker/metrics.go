package worker

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/setrelay/setrelay/internal/promreg"
)

// metrics are the pool's instruments. Push latency and per-reason push
// results are the push package's (setrelay_push_*); these describe what the
// worker did with each message.
type metrics struct {
	deliveries  *prometheus.CounterVec
	pubToDeliv  *prometheus.HistogramVec
	attempts    *prometheus.HistogramVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	inflight    prometheus.Gauge
	paused      *prometheus.GaugeVec
	pending     *prometheus.GaugeVec
	pauses      *prometheus.CounterVec
	pulls       *prometheus.CounterVec
	// extraOmitted counts extra events left out of a receiver's SETs
	// because the receiver did not ask for their types (see extras.go).
	extraOmitted *prometheus.CounterVec
	state        *prometheus.GaugeVec
	unrouted     *prometheus.CounterVec
	unknownRcv   *prometheus.CounterVec
	offSlot      *prometheus.CounterVec
	probes       *prometheus.CounterVec
	ratio        *prometheus.GaugeVec
	oldest       *oldestPending
	// settleFailures counts acks, naks and terms that could not be sent
	// (the connection is down or closing): the message is redelivered
	// after AckWait, so a delivered SET is pushed again.
	settleFailures *prometheus.CounterVec

	mu            sync.Mutex
	unroutedTypes map[string]struct{}
	unknownNames  map[string]struct{}
}

func newMetrics(reg prometheus.Registerer, now func() time.Time) (*metrics, error) {
	m := &metrics{
		oldest: newOldestPending(now),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "deliveries_total",
			Help: "Messages settled for good, by receiver and outcome (delivered, dead_lettered, skipped).",
		}, []string{"receiver", "outcome"}),
		pubToDeliv: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "setrelay", Name: "publish_to_delivery_seconds",
			Help:    "Time from JetStream storing an intent to the receiver accepting its SET, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400},
		}, []string{"receiver"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "setrelay", Name: "attempts_per_delivery",
			Help:    "Deliveries from JetStream it took until the receiver accepted a SET.",
			Buckets: []float64{1, 2, 3, 4, 6, 8, 12, 16, 24, 50},
		}, []string{"receiver"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "retries_total",
			Help: "Messages handed back with a delay, by receiver and reason (push reason code, or paused).",
		}, []string{"receiver", "reason"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "dead_letters_total",
			Help: "Messages written to the dead-letter stream, by receiver and reason.",
		}, []string{"receiver", "reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "setrelay", Name: "inflight_pushes",
			Help: "Messages being worked on (decode, sign, push, settle) right now.",
		}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "setrelay", Name: "consumer_paused",
			Help: "1 while the receiver's consumer is paused because the receiver is failing.",
		}, []string{"receiver"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "setrelay", Name: "consumer_pending",
			Help: "Messages the receiver's consumer has not delivered yet, from consumer info.",
		}, []string{"receiver"}),
		pauses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "pauses_total",
			Help: "Times this process paused the receiver's consumer.",
		}, []string{"receiver"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "pull_requests_total",
			Help: "Pull requests sent to the receiver's consumer; compare with deliveries to see the batch size.",
		}, []string{"receiver"}),
		extraOmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "extra_events_omitted_total",
			Help: "Extra events (an intent's extra_events) left out of the receiver's SETs because it did not ask for their types.",
		}, []string{"receiver"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "setrelay", Name: "receiver_state",
			Help: "1 for the receiver's current state (ok, failing, paused, blocked), with the reason of a failing, paused or blocked one.",
		}, []string{"receiver", "state", "reason"}),
		unrouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "intents_unrouted_total",
			Help: "Intents of a type no configured receiver requested, acknowledged without sending, by event type.",
		}, []string{"type"}),
		unknownRcv: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "intents_unknown_receiver_total",
			Help: "Intents whose receivers list names a receiver that is not configured (a typo, a removed receiver), by that name, counted once per intent.",
		}, []string{"receiver"}),
		offSlot: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "intents_off_slot_total",
			Help: "Intents an ordered receiver got on another slot subject than their subject's (a producer computing slots wrongly): delivered, but without the per-subject order guarantee.",
		}, []string{"receiver"}),
		ratio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "setrelay", Name: "receiver_success_ratio",
			Help: "Share of pushes the receiver accepted over the outage window (first attempts when there are enough), as the pause rule sees it.",
		}, []string{"receiver"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "receiver_probe_total",
			Help: "Probes of paused or blocked receivers made by this process, by result.",
		}, []string{"receiver", "result"}),
		settleFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "settle_failures_total",
			Help: "Acks, naks and terms (op) that could not be sent to NATS; the message is redelivered after nats.ack_wait (a delivered SET is pushed again).",
		}, []string{"receiver", "op"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.deliveries, err = promreg.Register(reg, m.deliveries); err != nil {
		return nil, err
	}
	if m.pubToDeliv, err = promreg.Register(reg, m.pubToDeliv); err != nil {
		return nil, err
	}
	if m.attempts, err = promreg.Register(reg, m.attempts); err != nil {
		return nil, err
	}
	if m.retries, err = promreg.Register(reg, m.retries); err != nil {
		return nil, err
	}
	if m.deadLetters, err = promreg.Register(reg, m.deadLetters); err != nil {
		return nil, err
	}
	if m.inflight, err = promreg.Register(reg, m.inflight); err != nil {
		return nil, err
	}
	if m.paused, err = promreg.Register(reg, m.paused); err != nil {
		return nil, err
	}
	if m.pending, err = promreg.Register(reg, m.pending); err != nil {
		return nil, err
	}
	if m.pauses, err = promreg.Register(reg, m.pauses); err != nil {
		return nil, err
	}
	if m.pulls, err = promreg.Register(reg, m.pulls); err != nil {
		return nil, err
	}
	if m.extraOmitted, err = promreg.Register(reg, m.extraOmitted); err != nil {
		return nil, err
	}
	if m.state, err = promreg.Register(reg, m.state); err != nil {
		return nil, err
	}
	if m.unrouted, err = promreg.Register(reg, m.unrouted); err != nil {
		return nil, err
	}
	if m.offSlot, err = promreg.Register(reg, m.offSlot); err != nil {
		return nil, err
	}
	if m.unknownRcv, err = promreg.Register(reg, m.unknownRcv); err != nil {
		return nil, err
	}
	if m.probes, err = promreg.Register(reg, m.probes); err != nil {
		return nil, err
	}
	if m.ratio, err = promreg.Register(reg, m.ratio); err != nil {
		return nil, err
	}
	if m.oldest, err = promreg.Register(reg, m.oldest); err != nil {
		return nil, err
	}
	if m.settleFailures, err = promreg.Register(reg, m.settleFailures); err != nil {
		return nil, err
	}
	return m, nil
}

// receiverMetrics are the label-bound children for one receiver, resolved
// once so the hot path does no label hashing.
type receiverMetrics struct {
	delivered, deadLettered, skipped prometheus.Counter
	pubToDeliv, attempts             prometheus.Observer
	paused, pending, successRatio    prometheus.Gauge
	pauses, pulls, extraOmitted      prometheus.Counter
	retries, deadLetters             *prometheus.CounterVec
	probes                           *prometheus.CounterVec
	settleFailures                   *prometheus.CounterVec
	oldest                           *oldestPending
	name                             string
}

func (m *metrics) forReceiver(name string) receiverMetrics {
	return receiverMetrics{
		delivered:      m.deliveries.WithLabelValues(name, "delivered"),
		deadLettered:   m.deliveries.WithLabelValues(name, "dead_lettered"),
		skipped:        m.deliveries.WithLabelValues(name, "skipped"),
		pubToDeliv:     m.pubToDeliv.WithLabelValues(name),
		attempts:       m.attempts.WithLabelValues(name),
		paused:         m.paused.WithLabelValues(name),
		pending:        m.pending.WithLabelValues(name),
		successRatio:   m.ratio.WithLabelValues(name),
		pauses:         m.pauses.WithLabelValues(name),
		pulls:          m.pulls.WithLabelValues(name),
		extraOmitted:   m.extraOmitted.WithLabelValues(name),
		retries:        m.retries,
		deadLetters:    m.deadLetters,
		probes:         m.probes,
		settleFailures: m.settleFailures,
		oldest:         m.oldest,
		name:           name,
	}
}

// oldestPending records when the receiver's oldest unsettled intent was
// stored (zero: none), for setrelay_consumer_oldest_pending_age_seconds.
func (rm *receiverMetrics) oldestPending(at time.Time) { rm.oldest.set(rm.name, at) }

// retry and deadLetter count by reason; reasons are a small fixed set of
// codes, and these are off the delivered path, so the lookup is fine.
func (rm *receiverMetrics) retry(reason string) { rm.retries.WithLabelValues(rm.name, reason).Inc() }
func (rm *receiverMetrics) deadLetter(reason string) {
	rm.deadLetters.WithLabelValues(rm.name, reason).Inc()
	rm.deadLettered.Inc()
}

func (rm *receiverMetrics) probe(result string) { rm.probes.WithLabelValues(rm.name, result).Inc() }

// settleFailed counts an ack, nak or term (op) that could not be sent.
func (rm *receiverMetrics) settleFailed(op string) {
	rm.settleFailures.WithLabelValues(rm.name, op).Inc()
}

// maxUnroutedTypes bounds the type label of setrelay_intents_unrouted_total:
// private types are open-ended, and a producer must not be able to grow the
// metrics without bound.
const maxUnroutedTypes = 100

func (m *metrics) unroutedType(typ string) {
	m.unrouted.WithLabelValues(m.bounded(&m.unroutedTypes, typ)).Inc()
}

// unknownReceiver counts an intent naming a receiver that is not
// configured. The name comes from the producer, so its label is bounded
// like the unrouted type.
func (m *metrics) unknownReceiver(name string) {
	if !receiverNameShape(name) {
		// No receiver can have this name (config allows
		// [A-Za-z0-9_-]{1,64}): its text, which may hold escape
		// sequences or newlines, stays out of /metrics.
		m.unknownRcv.WithLabelValues("invalid").Inc()
		return
	}
	m.unknownRcv.WithLabelValues(m.bounded(&m.unknownNames, name)).Inc()
}

// receiverNameShape reports whether name has the shape of a receiver name
// (config.Receiver.Name: [A-Za-z0-9_-]{1,64}).
func receiverNameShape(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// bounded returns v, or "other" once seen already holds maxUnroutedTypes
// other values: a label taken from input must not grow without bound.
func (m *metrics) bounded(seen *map[string]struct{}, v string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := (*seen)[v]; ok {
		return v
	}
	if len(*seen) >= maxUnroutedTypes {
		return "other"
	}
	if *seen == nil {
		*seen = make(map[string]struct{})
	}
	(*seen)[v] = struct{}{}
	return v
}
