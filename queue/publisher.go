package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/tracing"
)

// Header names on intent messages.
const (
	// HeaderTraceparent carries the producer's W3C trace context.
	HeaderTraceparent = "traceparent"
	// HeaderReplayOf marks a dead-letter replay with the dead letter's DLQ
	// stream sequence; the worker seeds a new jti from it.
	HeaderReplayOf = "Setrelay-Replay-Of"
)

// ErrStreamFull is returned (wrapped) when the intents stream has reached
// its configured MaxMsgs/MaxBytes, or the server its JetStream storage limit.
// Nothing was stored; the producer should retry later.
var ErrStreamFull = errors.New("queue: intents stream is full: nothing was stored; workers are not keeping up, a receiver is failing, or an orphaned consumer holds old intents " +
	"(check `nats consumer report " + IntentStream + "`, run `setrelay dlq list`, delete consumers of removed receivers, or raise nats.stream_max_msgs/stream_max_bytes)")

// ErrNotProvisioned is returned (wrapped) when no stream answers on the
// publish subject: `setrelay provision` (or a running setrelay) creates it.
var ErrNotProvisioned = errors.New("queue: no JetStream stream answers; run `setrelay provision` or start setrelay first")

// PubAck is the outcome of a stored publish.
type PubAck struct {
	// Sequence is the stream sequence of the stored message; for a
	// duplicate, that of the original.
	Sequence uint64
	// Duplicate reports that the same id was already stored within the
	// stream's duplicate window, so this publish stored nothing new.
	Duplicate bool
}

// Publisher publishes intents one at a time, waiting for JetStream's ack.
// It is safe for concurrent use. For bulk loads use BatchPublisher.
type Publisher struct {
	js   jetstream.JetStream
	opts intent.Options
}

// NewPublisher returns a Publisher validating with opts, which should match
// the relay's configuration (AllowPrivateTypes), so that the producer gets
// the same verdict as the worker.
func NewPublisher(js jetstream.JetStream, opts intent.Options) *Publisher {
	return &Publisher{js: js, opts: opts}
}

// Publish validates in (filling in.EventType), encodes it and publishes it
// with Nats-Msg-Id = in.ID and the traceparent from ctx. An invalid intent
// returns an error wrapping *intent.ValidationError and publishes nothing.
// Publishing an id already stored within the duplicate window is not an
// error: PubAck.Duplicate is set.
func (p *Publisher) Publish(ctx context.Context, in *intent.Intent) (PubAck, error) {
	data, err := Encode(in, p.opts)
	if err != nil {
		return PubAck{}, err
	}
	return p.publish(ctx, IntentSubjectFor(in.Subject), in.ID, data, nil)
}

// Encode validates and marshals an intent as Publish does, for callers that
// publish the bytes themselves (BatchPublisher.Add, other transports).
func Encode(in *intent.Intent, opts intent.Options) ([]byte, error) {
	if in == nil {
		return nil, errors.New("queue: nil intent")
	}
	if err := in.Validate(opts); err != nil {
		return nil, fmt.Errorf("queue: invalid intent %q: %w", in.ID, err)
	}
	data, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("queue: encode intent %q: %w", in.ID, err)
	}
	if len(data) > intent.MaxSize {
		return nil, fmt.Errorf("queue: intent %q is %d bytes, over the %d-byte limit", in.ID, len(data), intent.MaxSize)
	}
	return data, nil
}

// PublishRaw publishes already-validated intent bytes with Nats-Msg-Id = id.
// hdr may carry extra headers (it is not modified); traceparent is taken
// from ctx unless hdr has one.
//
// The subject is read from data to choose the intent's slot subject
// (partition.go), so receivers with per-subject ordering get it in order.
func (p *Publisher) PublishRaw(ctx context.Context, id string, data []byte, hdr nats.Header) (PubAck, error) {
	return p.publish(ctx, SlotSubject(slotOf(data)), id, data, hdr)
}

func (p *Publisher) publish(ctx context.Context, subject, id string, data []byte, hdr nats.Header) (_ PubAck, err error) {
	// The span names the logical destination, not the slot subject:
	// 1024 span names would defeat grouping by name.
	ctx, end := startSend(ctx, IntentSubject, id, len(data))
	defer func() { end(err) }()
	msg, err := intentMsg(ctx, subject, id, data, hdr)
	if err != nil {
		return PubAck{}, err
	}
	ack, err := p.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(IntentStream))
	if err != nil {
		return PubAck{}, publishError(id, err)
	}
	return PubAck{Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// intentMsg builds the message for an intent publish, copying hdr so the
// caller's map is never shared with the client library.
func intentMsg(ctx context.Context, subject, id string, data []byte, hdr nats.Header) (*nats.Msg, error) {
	if id == "" {
		return nil, errors.New("queue: intent id is required: it is the deduplication key")
	}
	h := make(nats.Header, len(hdr)+2)
	for k, v := range hdr {
		h[k] = append([]string(nil), v...)
	}
	h.Set(jetstream.MsgIDHeader, id)
	if h.Get(HeaderTraceparent) == "" {
		tracing.Inject(ctx, h)
	}
	return &nats.Msg{Subject: subject, Data: data, Header: h}, nil
}

// JetStream error codes that mean "stored nothing because full".
const (
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	errCodeStreamStoreFailed     jetstream.ErrorCode = 10077
)

// publishError turns client and server errors into ones an operator can act on.
func publishError(id string, err error) error {
	if isStreamFull(err) {
		return fmt.Errorf("%w (intent %q: %w)", ErrStreamFull, id, err)
	}
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w (intent %q: %w)", ErrNotProvisioned, id, err)
	}
	return fmt.Errorf("queue: publish intent %q: %w", id, err)
}

func isStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case errCodeInsufficientResources:
		return true
	case errCodeStreamStoreFailed:
		d := apiErr.Description
		return strings.Contains(d, "maximum messages exceeded") || strings.Contains(d, "maximum bytes exceeded")
	}
	return false
}

// WithTraceparent returns a context carrying a W3C traceparent for the
// publishes made with it: it becomes the remote parent of spans started from
// the context, and is what Publish writes when no span is started. A value
// that is not a well-formed traceparent (version-traceid-parentid-flags,
// lowercase hex) is ignored rather than forwarded, so a malformed value
// cannot break downstream tracing. A span in the caller's context, from an
// OpenTelemetry SDK, is propagated the same way without this.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if !validTraceparent(tp) {
		return ctx
	}
	return tracing.ContextWithTraceparent(ctx, tp, "")
}

// Traceparent returns the traceparent of the span context in ctx (set by
// WithTraceparent or by a span), or "".
func Traceparent(ctx context.Context) string {
	return tracing.Traceparent(ctx)
}

func validTraceparent(tp string) bool {
	parts := strings.Split(tp, "-")
	if len(parts) < 4 {
		return false
	}
	lens := []int{2, 32, 16, 2}
	for i, n := range lens {
		if len(parts[i]) != n || !isLowerHex(parts[i]) {
			return false
		}
	}
	// Version ff is invalid; all-zero trace and parent ids are invalid.
	return parts[0] != "ff" && parts[1] != strings.Repeat("0", 32) && parts[2] != strings.Repeat("0", 16) &&
		(parts[0] != "00" || len(parts) == 4)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
