package ssf

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/internal/promreg"
)

// metrics of the transmitter API and poll delivery. Per-stream series are
// labelled with the stream id (a bounded set: MaxStreamsPerClient per
// client); push streams' delivery metrics come from the worker pool,
// labelled receiver="ssf-<stream id>".
type metrics struct {
	streamOps     *prometheus.CounterVec
	verifications *prometheus.CounterVec
	authFailures  prometheus.Counter
	polled        *prometheus.CounterVec
	acked         *prometheus.CounterVec
	setErrs       *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	extraOmitted  *prometheus.CounterVec
	subjectOps    *prometheus.CounterVec
	tooWide       prometheus.Counter
	streams       *prometheus.GaugeVec
	pending       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		streamOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_stream_operations_total", Help: "Stream management operations that succeeded, by operation.",
		}, []string{"op"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_verifications_total", Help: "Verification requests: queued, or refused as too soon (429).",
		}, []string{"result"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "setrelay_ssf_auth_failures_total", Help: "Requests refused with 401: no bearer token or an unknown one.",
		}),
		polled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_poll_sets_total", Help: "SETs returned to poll requests (re-offers included), per stream.",
		}, []string{"stream"}),
		acked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_poll_acks_total", Help: "SETs a poll receiver acknowledged, per stream.",
		}, []string{"stream"}),
		setErrs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_poll_set_errors_total", Help: "SETs a poll receiver rejected (setErrs), dead-lettered, per stream.",
		}, []string{"stream"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_poll_skipped_total", Help: "Intents settled without delivery to a poll stream (type or subject not requested), per stream.",
		}, []string{"stream"}),
		// The worker's metric (same name, help and label), so extra events
		// left out count in one series per stream whatever its method:
		// receiver="ssf-<stream id>".
		extraOmitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "setrelay", Name: "extra_events_omitted_total",
			Help: "Extra events (an intent's extra_events) left out of the receiver's SETs because it did not ask for their types.",
		}, []string{"receiver"}),
		subjectOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "setrelay_ssf_subject_operations_total", Help: "Subjects added and removed, per stream.",
		}, []string{"stream", "op"}),
		tooWide: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "setrelay_ssf_subjects_too_wide_total", Help: "Intents whose complex subject has more members than subject matching looks up (8), settled without delivery to streams that have subjects.",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "setrelay_ssf_streams", Help: "Receiver-managed streams, by delivery method and status.",
		}, []string{"method", "status"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "setrelay_ssf_stream_pending", Help: "Intents a stream's consumer holds that were not delivered yet (push streams also have setrelay_consumer_pending).",
		}, []string{"stream"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, v := range []**prometheus.CounterVec{&m.streamOps, &m.verifications, &m.polled, &m.acked, &m.setErrs, &m.skipped, &m.extraOmitted, &m.subjectOps} {
		got, err := promreg.Register(reg, *v)
		if err != nil {
			return nil, fmt.Errorf("ssf: register metrics: %w", err)
		}
		*v = got
	}
	for _, v := range []**prometheus.GaugeVec{&m.streams, &m.pending} {
		got, err := promreg.Register(reg, *v)
		if err != nil {
			return nil, fmt.Errorf("ssf: register metrics: %w", err)
		}
		*v = got
	}
	got, err := promreg.Register(reg, m.authFailures)
	if err != nil {
		return nil, fmt.Errorf("ssf: register metrics: %w", err)
	}
	m.authFailures = got
	if m.tooWide, err = promreg.Register(reg, m.tooWide); err != nil {
		return nil, fmt.Errorf("ssf: register metrics: %w", err)
	}
	return m, nil
}
