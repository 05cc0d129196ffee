// Package status answers "is every receiver healthy right now?" for
// `setrelay status`: it reads each receiver's consumer and dead letters from
// JetStream, the state the relays share in the SETRELAY_RECEIVERS bucket,
// and, where reachable, each relay's ops endpoint (/metrics) for what only
// a running process knows: a failing receiver, deliveries in the last
// minute, the access token's remaining lifetime.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// States, worst last: a receiver's state is the worst any source reports.
const (
	StateOK      = "ok"
	StateFailing = "failing"
	StatePaused  = "paused"
	StateBlocked = "blocked"
	// StateNoConsumer is a configured receiver without its consumer on the
	// intents stream (added but not provisioned, or pruned): the stream
	// keeps messages only for the consumers that exist, so it gets nothing.
	StateNoConsumer = "no_consumer"
)

var stateRank = map[string]int{StateOK: 0, StateFailing: 1, StatePaused: 2, StateBlocked: 3, StateNoConsumer: 4}

// Receiver is one receiver's health.
type Receiver struct {
	Name string `json:"receiver"`
	// State is ok, failing, paused or blocked; Reason the reason code of
	// any other than ok, Fix what to change for a blocked one.
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Fix    string    `json:"fix,omitempty"`
	Since  time.Time `json:"since,omitzero"`
	// Pending is what the consumer has not delivered yet; InFlight what
	// it delivered and awaits an ack for (being pushed, or waiting for a
	// retry).
	Pending  uint64 `json:"pending"`
	InFlight int    `json:"in_flight"`
	// OldestPending is the age of the oldest intent not yet settled for
	// this receiver; 0 when there is none.
	OldestPending time.Duration `json:"-"`
	// DeadLetters is the receiver's dead letters now in SETRELAY_DLQ, and
	// DeadLettersLastHour those stored in the last hour.
	DeadLetters         uint64 `json:"dead_letters"`
	DeadLettersLastHour uint64 `json:"dead_letters_last_hour"`
	// DeliveredLastMinute sums the reachable relays' counts; nil when no
	// ops endpoint answered.
	DeliveredLastMinute *int64 `json:"delivered_last_minute,omitempty"`
	// LastError is the latest failure reason known: the state's, or the
	// latest dead letter's.
	LastError string `json:"last_error,omitempty"`
	// TokenLeft is the current access token's remaining lifetime as a
	// relay knows it (the shortest, over several relays); nil when unknown.
	TokenLeft *time.Duration `json:"-"`
}

// MarshalJSON writes the durations as seconds (oldest_pending_seconds,
// token_left_seconds).
func (r Receiver) MarshalJSON() ([]byte, error) {
	type plain Receiver
	out := struct {
		plain
		OldestPending float64  `json:"oldest_pending_seconds"`
		TokenLeft     *float64 `json:"token_left_seconds,omitempty"`
	}{plain: plain(r), OldestPending: r.OldestPending.Seconds()}
	if r.TokenLeft != nil {
		s := r.TokenLeft.Seconds()
		out.TokenLeft = &s
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Receiver) UnmarshalJSON(data []byte) error {
	type plain Receiver
	in := struct {
		*plain
		OldestPending float64  `json:"oldest_pending_seconds"`
		TokenLeft     *float64 `json:"token_left_seconds"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	r.OldestPending = time.Duration(in.OldestPending * float64(time.Second))
	if in.TokenLeft != nil {
		d := time.Duration(*in.TokenLeft * float64(time.Second))
		r.TokenLeft = &d
	}
	return nil
}

// Report is one look at every receiver.
type Report struct {
	At        time.Time  `json:"at"`
	Receivers []Receiver `json:"receivers"`
	// OpsErrors name the ops endpoints that did not answer; their
	// processes' view (failing, deliveries, token) is missing.
	OpsErrors []string `json:"ops_errors,omitempty"`
}

// Blocked reports whether any receiver is blocked.
func (r Report) Blocked() bool {
	return slices.ContainsFunc(r.Receivers, func(x Receiver) bool { return x.State == StateBlocked })
}

// NoConsumer reports whether any configured receiver has no consumer.
func (r Report) NoConsumer() bool {
	return slices.ContainsFunc(r.Receivers, func(x Receiver) bool { return x.State == StateNoConsumer })
}

// Options say what to look at.
type Options struct {
	// Receivers are the names to report first, in order (the
	// configuration's); every other consumer on the intents stream follows.
	Receivers []string
	// Ops are the relays' ops endpoints ("http://host:port").
	Ops []string
	// Client fetches /metrics (default: a client with a 5 s timeout).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Config is the configuration file Receivers come from, named in the
	// fix of a receiver without a consumer ("" for a generic one).
	Config string
}

// Collect builds the Report.
func Collect(ctx context.Context, js jetstream.JetStream, o Options) (Report, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 5 * time.Second}
	}
	now := o.Now()
	rep := Report{At: now.UTC()}
	intents, err := js.Stream(ctx, queue.IntentStream)
	if err != nil {
		return rep, fmt.Errorf("status: intents stream %s: %w (has setrelay provisioned this NATS?)", queue.IntentStream, err)
	}
	// The given receivers first, then every other consumer: receiver-
	// managed SSF streams (ssf-<id>), and receivers removed from the
	// configuration whose consumers still hold a backlog.
	names := append([]string(nil), o.Receivers...)
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[queue.ConsumerName(n)] = true
	}
	others, err := consumerReceivers(ctx, intents)
	if err != nil {
		return rep, err
	}
	for _, n := range others {
		if !known[queue.ConsumerName(n)] {
			names = append(names, n)
		}
	}
	dlq, err := js.Stream(ctx, queue.DLQStream)
	if err != nil {
		return rep, fmt.Errorf("status: dead-letter stream %s: %w", queue.DLQStream, err)
	}
	views := scrapeAll(ctx, o.Client, o.Ops)
	for _, v := range views {
		if v.err != nil {
			rep.OpsErrors = append(rep.OpsErrors, v.err.Error())
		}
	}
	for _, name := range names {
		r, err := collectOne(ctx, js, intents, dlq, name, now, o.Config)
		if err != nil {
			return rep, err
		}
		merge(&r, views, now)
		rep.Receivers = append(rep.Receivers, r)
	}
	return rep, nil
}

// consumerReceivers lists the receivers that have a consumer (by token,
// which is the name for names of [A-Za-z0-9_-]).
func consumerReceivers(ctx context.Context, s jetstream.Stream) ([]string, error) {
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		if rest, ok := strings.CutPrefix(n, "rcv_"); ok {
			names = append(names, rest)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("status: list consumers: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

func collectOne(ctx context.Context, js jetstream.JetStream, intents, dlq jetstream.Stream, name string, now time.Time, config string) (Receiver, error) {
	r := Receiver{Name: name, State: StateOK}
	shared, err := worker.SharedState(ctx, js, name)
	if err != nil {
		return r, fmt.Errorf("status: receiver %q state: %w", name, err)
	}
	r.raise(shared.State, shared.Reason, shared.Since)
	r.Fix = shared.Fix

	cons, err := intents.Consumer(ctx, queue.ConsumerName(name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		// Only a configured receiver can lack its consumer (the others
		// are listed from the consumers). Report it with the rest rather
		// than failing the whole report: the other receivers' health is
		// still what the operator asked for.
		r.raise(StateNoConsumer, "", time.Time{})
		if config == "" {
			config = "FILE"
		}
		r.Fix = fmt.Sprintf("no consumer %s on %s, so nothing is delivered to it, and the stream keeps an intent for it only while another consumer still holds it; create it with 'setrelay provision --config %s' (or start 'setrelay run' with that configuration)",
			queue.ConsumerName(name), queue.IntentStream, config)
		// Not "return r, deadLetters(..., &r, ...)": the order in which r is
		// read and the call fills it in is unspecified.
		err = deadLetters(ctx, dlq, &r, name, now)
		return r, err
	}
	if err != nil {
		return r, fmt.Errorf("status: receiver %q consumer %s: %w", name, queue.ConsumerName(name), err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return r, fmt.Errorf("status: consumer %s: %w", queue.ConsumerName(name), err)
	}
	// An ordered receiver's intents wait in its partition consumers; its
	// receiver consumer holds only what predates ordering.
	parts, err := queue.PartitionConsumers(ctx, intents, name)
	if err != nil {
		return r, fmt.Errorf("status: receiver %q: %w", name, err)
	}
	var oldest time.Time
	for _, ci := range append(parts, ci) {
		r.Pending += ci.NumPending
		r.InFlight += ci.NumAckPending
		if ci.Paused {
			r.raise(StatePaused, "", time.Time{})
		}
		if ci.NumPending+uint64(ci.NumAckPending) == 0 {
			continue
		}
		if at, ok := queue.OldestUnsettled(ctx, intents, ci); ok && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if !oldest.IsZero() {
		r.OldestPending = max(now.Sub(oldest), 0)
	}
	err = deadLetters(ctx, dlq, &r, name, now)
	return r, err
}

// deadLetters fills in the receiver's dead-letter counts and the latest
// dead letter's reason.
func deadLetters(ctx context.Context, dlq jetstream.Stream, r *Receiver, name string, now time.Time) error {
	subject := queue.DLQSubject(name)
	si, err := dlq.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return fmt.Errorf("status: dead letters of %q: %w", name, err)
	}
	r.DeadLetters = si.State.Subjects[subject]
	if r.DeadLetters > 0 {
		if r.DeadLettersLastHour, err = countSince(ctx, dlq, subject, now.Add(-time.Hour)); err != nil {
			return err
		}
		if last, err := dlq.GetLastMsgForSubject(ctx, subject); err == nil {
			if reason := lastDeadLetterReason(last.Data); reason != "" {
				r.LastError = "dead letter: " + reason
			}
		}
	}
	return nil
}

// raise moves r to state if that is worse than what it has.
func (r *Receiver) raise(state, reason string, since time.Time) {
	if stateRank[state] > stateRank[r.State] {
		r.State, r.Reason, r.Since = state, reason, since
	} else if state == r.State && r.Reason == "" {
		r.Reason = reason
	}
}

// countSince counts the messages on subject stored since t, with an
// ephemeral ordered consumer that delivers nothing: its info says how many
// it would.
func countSince(ctx context.Context, s jetstream.Stream, subject string, t time.Time) (uint64, error) {
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subject},
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &t,
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return 0, fmt.Errorf("status: count dead letters: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("status: count dead letters: %w", err)
	}
	return info.NumPending, nil
}

// lastDeadLetterReason reads "reason" from a stored dead letter.
func lastDeadLetterReason(data []byte) string {
	var dl queue.DeadLetter
	if err := dl.UnmarshalJSON(data); err != nil {
		return ""
	}
	if dl.Status != 0 {
		return fmt.Sprintf("%s (HTTP %d)", dl.Reason, dl.Status)
	}
	return dl.Reason
}
