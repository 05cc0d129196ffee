package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/tracing"
)

// ErrDeadLetterNotFound is returned (wrapped) for a DLQ sequence that holds
// no dead letter (never stored, replayed or purged).
var ErrDeadLetterNotFound = errors.New("queue: dead letter not found")

// StoredDeadLetter is a dead letter as read back from SETRELAY_DLQ.
type StoredDeadLetter struct {
	DeadLetter
	// Seq identifies the dead letter for Get, Replay and Purge.
	Seq uint64
	// Stored is when JetStream stored it.
	Stored time.Time
	// DecodeError is set when the message is not a dead letter this
	// version can read (published by hand, say); Receiver then comes from
	// the subject and Intent holds the raw message.
	DecodeError string
	// Traceparent and Tracestate are the W3C trace context the dead letter
	// was stored with: that of the failed delivery, in the producer's
	// trace. Replay puts them on the replayed intent, so its deliveries
	// join the same trace.
	Traceparent, Tracestate string
}

// storedMeta is the part of StoredDeadLetter's JSON that DeadLetter lacks.
type storedMeta struct {
	Seq         uint64    `json:"seq"`
	Stored      time.Time `json:"stored"`
	DecodeError string    `json:"decode_error,omitempty"`
	Traceparent string    `json:"traceparent,omitempty"`
	Tracestate  string    `json:"tracestate,omitempty"`
}

// MarshalJSON adds seq, stored and decode_error to the dead letter's JSON
// (the embedded DeadLetter's MarshalJSON would otherwise drop them).
func (s StoredDeadLetter) MarshalJSON() ([]byte, error) {
	meta, err := json.Marshal(storedMeta{Seq: s.Seq, Stored: s.Stored, DecodeError: s.DecodeError, Traceparent: s.Traceparent, Tracestate: s.Tracestate})
	if err != nil {
		return nil, fmt.Errorf("queue: encode dead letter: %w", err)
	}
	dl, err := s.DeadLetter.MarshalJSON()
	if err != nil {
		return nil, err
	}
	out := append(meta[:len(meta)-1:len(meta)-1], ',')
	return append(out, dl[1:]...), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *StoredDeadLetter) UnmarshalJSON(data []byte) error {
	var meta storedMeta
	if err := json.Unmarshal(data, &meta); err != nil {
		return err
	}
	if err := s.DeadLetter.UnmarshalJSON(data); err != nil {
		return err
	}
	s.Seq, s.Stored, s.DecodeError = meta.Seq, meta.Stored, meta.DecodeError
	s.Traceparent, s.Tracestate = meta.Traceparent, meta.Tracestate
	return nil
}

// Filter selects dead letters. Zero fields match everything.
type Filter struct {
	Receiver string
	Reason   string
	// Since and Until bound the stored time (inclusive, exclusive).
	Since, Until time.Time
	// Limit caps how many are returned or purged; 0 is no limit.
	Limit int
}

func (f Filter) match(sdl StoredDeadLetter) bool {
	if f.Reason != "" && sdl.Reason != f.Reason {
		return false
	}
	if !f.Since.IsZero() && sdl.Stored.Before(f.Since) {
		return false
	}
	return f.Until.IsZero() || sdl.Stored.Before(f.Until)
}

// ReplayResult describes a replayed dead letter.
type ReplayResult struct {
	DLQSeq   uint64
	Receiver string
	IntentID string
	// Sequence is the replay's sequence in SETRELAY_INTENTS.
	Sequence uint64
	// Duplicate means the replay had already been stored (an earlier replay
	// crashed before deleting the dead letter); nothing new was queued.
	Duplicate bool
}

// DLQ reads and acts on the dead-letter stream for `setrelay dlq`. Reading
// uses ordered (ephemeral) consumers and direct gets on SETRELAY_DLQ, so it
// never touches the receivers' consumers.
type DLQ struct {
	js   jetstream.JetStream
	keys *ReplayKeys
}

// NewDLQ returns the dead-letter operations on js.
func NewDLQ(js jetstream.JetStream) *DLQ { return &DLQ{js: js, keys: NewReplayKeys(js)} }

// List returns the dead letters matching f, oldest first.
func (d *DLQ) List(ctx context.Context, f Filter) ([]StoredDeadLetter, error) {
	var out []StoredDeadLetter
	err := d.Each(ctx, f, func(sdl StoredDeadLetter) error {
		out = append(out, sdl)
		return nil
	})
	return out, err
}

// Each calls fn for every dead letter matching f, oldest first, without
// holding them all in memory. An error from fn stops the walk and is returned.
func (d *DLQ) Each(ctx context.Context, f Filter, fn func(StoredDeadLetter) error) error {
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return fmt.Errorf("queue: dead-letter stream: %w", err)
	}
	subject := DLQSubjectPrefix + ">"
	if f.Receiver != "" {
		subject = DLQSubject(f.Receiver)
	}
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{subject},
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: 10 * time.Second,
	}
	if !f.Since.IsZero() {
		since := f.Since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := stream.OrderedConsumer(ctx, cfg)
	if err != nil {
		return fmt.Errorf("queue: read dead letters: %w", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("queue: read dead letters: %w", err)
	}
	remaining := info.NumPending
	matched := 0
	for remaining > 0 {
		msgs, err := fetchBatch(ctx, cons, int(min(remaining, 256)))
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			// The remaining ones were deleted (replayed or purged) meanwhile.
			return ctx.Err()
		}
		for _, msg := range msgs {
			md, err := msg.Metadata()
			if err != nil {
				return fmt.Errorf("queue: read dead letters: %w", err)
			}
			remaining = md.NumPending
			sdl := decodeStored(msg.Subject(), msg.Headers(), msg.Data(), md.Sequence.Stream, md.Timestamp)
			if !f.Until.IsZero() && !sdl.Stored.Before(f.Until) {
				// Stored times only grow with the sequence.
				return nil
			}
			if !f.match(sdl) {
				continue
			}
			if err := fn(sdl); err != nil {
				return err
			}
			matched++
			if f.Limit > 0 && matched >= f.Limit {
				return nil
			}
		}
	}
	return nil
}

// fetchBatch pulls up to n messages, waiting at most a few seconds: the
// caller knows from NumPending that they exist.
func fetchBatch(ctx context.Context, cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return nil, fmt.Errorf("queue: read dead letters: %w", err)
	}
	msgs := make([]jetstream.Msg, 0, n)
	for msg := range batch.Messages() {
		msgs = append(msgs, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("queue: read dead letters: %w", err)
	}
	return msgs, nil
}

// Get returns the dead letter stored at DLQ sequence seq.
func (d *DLQ) Get(ctx context.Context, seq uint64) (StoredDeadLetter, error) {
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return StoredDeadLetter{}, fmt.Errorf("queue: dead-letter stream: %w", err)
	}
	msg, err := stream.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return StoredDeadLetter{}, fmt.Errorf("%w: %d", ErrDeadLetterNotFound, seq)
		}
		return StoredDeadLetter{}, fmt.Errorf("queue: get dead letter %d: %w", seq, err)
	}
	return decodeStored(msg.Subject, msg.Header, msg.Data, msg.Sequence, msg.Time), nil
}

// Replay re-queues the dead letter's original intent bytes for its receiver
// only, on setrelay.replay.<receiver>, with Setrelay-Replay-Of = seq, its
// Setrelay-Replay-Mac (see ReplayKeys) and a Nats-Msg-Id derived from
// (receiver, seq). It waits for the publish ack and
// only then deletes the dead letter, so a crash in between can duplicate the
// replay (deduplicated within the window) but never lose the dead letter.
func (d *DLQ) Replay(ctx context.Context, seq uint64) (ReplayResult, error) {
	sdl, err := d.Get(ctx, seq)
	if err != nil {
		return ReplayResult{}, err
	}
	res := ReplayResult{DLQSeq: seq, Receiver: sdl.Receiver, IntentID: sdl.IntentID}
	if sdl.DecodeError != "" {
		return res, fmt.Errorf("queue: replay %d: not a readable dead letter: %s", seq, sdl.DecodeError)
	}
	if len(sdl.Intent) == 0 {
		return res, fmt.Errorf("queue: replay %d: the dead letter holds no intent bytes", seq)
	}
	// With Interest retention a replay nobody is interested in is stored and
	// dropped at once; check the receiver's consumer exists before deleting
	// the only copy.
	if _, err := d.js.Consumer(ctx, IntentStream, ConsumerName(sdl.Receiver)); err != nil {
		return res, fmt.Errorf("queue: replay %d: receiver %q has no consumer %s (is it still configured and provisioned?): %w",
			seq, sdl.Receiver, ConsumerName(sdl.Receiver), err)
	}
	// The MAC proves to the worker that this replay was made here, from
	// this dead letter of this receiver, with these bytes (replayauth.go).
	mac, err := d.keys.Sign(ctx, sdl.Receiver, seq, sdl.Intent)
	if err != nil {
		return res, fmt.Errorf("queue: replay %d: %w", seq, err)
	}
	hdr := nats.Header{}
	hdr.Set(HeaderReplayOf, strconv.FormatUint(seq, 10))
	hdr.Set(HeaderReplayMAC, mac)
	// The replay continues the trace of the delivery that failed, so
	// whoever follows it sees the original publish, the failed attempts
	// and the replay's deliveries together. A dead letter stored without
	// trace context takes the caller's, if any.
	if sdl.Traceparent != "" {
		hdr.Set(tracing.HeaderTraceparent, sdl.Traceparent)
		if sdl.Tracestate != "" {
			hdr.Set(tracing.HeaderTracestate, sdl.Tracestate)
		}
	}
	msg, err := intentMsg(ctx, slotReplaySubject(sdl.Receiver, slotOf(sdl.Intent)), ReplayMsgID(sdl.Receiver, seq, mac), sdl.Intent, hdr)
	if err != nil {
		return res, err
	}
	ack, err := d.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(IntentStream))
	if err != nil {
		return res, publishError(sdl.IntentID, err)
	}
	res.Sequence, res.Duplicate = ack.Sequence, ack.Duplicate
	if err := d.delete(ctx, seq); err != nil {
		return res, fmt.Errorf("queue: replay %d stored as intent seq %d, but the dead letter was not deleted (a second replay is deduplicated): %w", seq, ack.Sequence, err)
	}
	return res, nil
}

// ReplayMsgID is the Nats-Msg-Id of the replay of DLQ sequence seq for
// receiver, whose MAC (ReplayKeys.Sign) is mac.
//
// The intents stream deduplicates on this header whatever the subject, and
// a producer may set any Nats-Msg-Id on what it publishes. With the
// receiver and sequence alone (both predictable) a producer could take a
// replay's id in advance: the replay would then be answered "duplicate",
// never stored, and Replay would delete the dead letter, its only copy.
// The MAC is keyed with the relay's replay key, so no producer can make
// the id, and it is deterministic, so replaying the same dead letter again
// (after a crash between storing the replay and deleting the dead letter)
// is still deduplicated.
func ReplayMsgID(receiver string, seq uint64, mac string) string {
	return "replay-" + Token(receiver) + "-" + strconv.FormatUint(seq, 10) + "-" + mac
}

// Purge deletes the dead letters matching f and returns how many it deleted.
//
// A purged dead letter no longer holds its subject (on_dead_letter: hold):
// it is released from the subject's hold first, so a failure leaves the
// dead letter in place to purge again rather than a hold nothing can end.
func (d *DLQ) Purge(ctx context.Context, f Filter) (int, error) {
	holds, err := bindHolds(ctx, d.js)
	if err != nil {
		return 0, err
	}
	n := 0
	err = d.Each(ctx, f, func(sdl StoredDeadLetter) error {
		if err := holds.releasePurged(ctx, sdl); err != nil {
			return err
		}
		if err := d.delete(ctx, sdl.Seq); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// delete removes one dead letter; one already gone is not an error, since
// the goal (it is not there) is met.
func (d *DLQ) delete(ctx context.Context, seq uint64) error {
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return fmt.Errorf("queue: dead-letter stream: %w", err)
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("queue: delete dead letter %d: %w", seq, err)
	}
	return nil
}

// decodeStored decodes a DLQ message, keeping an undecodable one visible
// rather than failing the whole listing.
func decodeStored(subject string, hdr nats.Header, data []byte, seq uint64, stored time.Time) StoredDeadLetter {
	sdl := StoredDeadLetter{Seq: seq, Stored: stored}
	if tc := tracing.Headers(hdr); tc != nil {
		sdl.Traceparent, sdl.Tracestate = tc.Get(tracing.HeaderTraceparent), tc.Get(tracing.HeaderTracestate)
	}
	if err := json.Unmarshal(data, &sdl.DeadLetter); err != nil {
		sdl.DeadLetter = DeadLetter{
			Receiver: strings.TrimPrefix(subject, DLQSubjectPrefix),
			Intent:   append(json.RawMessage(nil), data...),
		}
		sdl.DecodeError = err.Error()
	}
	return sdl
}

// ReplayOf returns the DLQ sequence a replayed intent message came from (its
// Setrelay-Replay-Of header), for the worker to seed a new jti and to record
// the link if the replay is dead-lettered again.
func ReplayOf(h nats.Header) (seq uint64, ok bool) {
	v := h.Get(HeaderReplayOf)
	if v == "" {
		return 0, false
	}
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 {
		return 0, false
	}
	return seq, true
}
