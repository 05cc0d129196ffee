package worker

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/queue"
)

// oldestPending is setrelay_consumer_oldest_pending_age_seconds. pollInfo
// records when each receiver's oldest unsettled intent was stored, beside
// the pending gauge and as often; the age is worked out at scrape time, so
// it grows between polls instead of standing still, and no delivery ever
// touches it.
type oldestPending struct {
	desc *prometheus.Desc
	now  func() time.Time

	mu sync.Mutex
	at map[string]time.Time // receiver -> stored time of its oldest unsettled intent; zero: none
}

func newOldestPending(now func() time.Time) *oldestPending {
	return &oldestPending{
		desc: prometheus.NewDesc("setrelay_consumer_oldest_pending_age_seconds",
			"Age of the receiver's oldest intent not yet settled (pending or in flight), from consumer info; 0 when there is none.",
			[]string{"receiver"}, nil),
		now: now,
		at:  map[string]time.Time{},
	}
}

func (o *oldestPending) Describe(ch chan<- *prometheus.Desc) { ch <- o.desc }

func (o *oldestPending) Collect(ch chan<- prometheus.Metric) {
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, at := range o.at {
		age := 0.0
		if !at.IsZero() {
			age = max(now.Sub(at), 0).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(o.desc, prometheus.GaugeValue, age, name)
	}
}

// set records the stored time of the receiver's oldest unsettled intent
// (zero: none); a receiver is exported from its first set on.
func (o *oldestPending) set(receiver string, at time.Time) {
	o.mu.Lock()
	o.at[receiver] = at
	o.mu.Unlock()
}

// oldestFinder finds a consumer's oldest unsettled intent for pollInfo,
// keeping the stream handles so that each poll costs only the message gets.
type oldestFinder struct {
	js      jetstream.JetStream
	streams map[string]jetstream.Stream
}

// backlog returns what r's consumers hold: its pending count, and when its
// oldest unsettled intent was stored. An ordered receiver's intents wait in
// its partition consumers (one listing of the stream's consumers), the
// receiver consumer (info) holding only what predates ordering.
func (f *oldestFinder) backlog(ctx context.Context, r *rcv, info *jetstream.ConsumerInfo) (uint64, time.Time, error) {
	pending, oldest := info.NumPending, f.find(ctx, info)
	if len(r.parts) == 0 {
		return pending, oldest, nil
	}
	s, err := f.stream(ctx, info.Stream)
	if err != nil {
		return 0, time.Time{}, err
	}
	parts, err := queue.PartitionConsumers(ctx, s, r.Name)
	if err != nil {
		return 0, time.Time{}, err
	}
	for _, ci := range parts {
		pending += ci.NumPending
		if at := f.find(ctx, ci); !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return pending, oldest, nil
}

// find returns when the oldest intent the consumer has not settled was
// stored, or the zero time when it has none (or NATS did not say).
func (f *oldestFinder) find(ctx context.Context, info *jetstream.ConsumerInfo) time.Time {
	if info.NumPending == 0 && info.NumAckPending == 0 {
		return time.Time{}
	}
	s, err := f.stream(ctx, info.Stream)
	if err != nil {
		return time.Time{}
	}
	at, _ := queue.OldestUnsettled(ctx, s, info)
	return at
}

// stream returns the handle of the named stream, looked up once.
func (f *oldestFinder) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if s, ok := f.streams[name]; ok {
		return s, nil
	}
	s, err := f.js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	if f.streams == nil {
		f.streams = map[string]jetstream.Stream{}
	}
	f.streams[name] = s
	return s, nil
}
