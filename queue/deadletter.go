package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/tracing"
)

// DeadLetter records an intent that could not be delivered to one receiver:
// why, what the receiver said, and the original intent bytes, so that it can
// be inspected and replayed once the problem is fixed.
type DeadLetter struct {
	Receiver string
	// Reason is the stable reason code: a permanent push.Result.Reason, or
	// one of the worker's ("invalid_intent", "attempts_exhausted",
	// "max_age_exceeded", "max_deliveries" ...).
	Reason string
	// LastReason is the last push result's reason code ("http_5xx",
	// "timeout", "tls" ...) when Reason is the worker's own, so an operator
	// reading "attempts_exhausted" also sees what kept failing.
	LastReason string
	// Status is the receiver's HTTP status (0 when no response was had).
	Status int
	// Err and Description are the receiver's RFC 8935 error, if any.
	Err, Description string
	// Body is a bounded excerpt of the receiver's response.
	Body string
	// Attempts is how many times delivery was tried.
	Attempts                  int
	FirstAttempt, LastAttempt time.Time
	// StreamSeq is the intent's sequence in SETRELAY_INTENTS.
	StreamSeq uint64
	IntentID  string
	// Intent is the original message bytes, exactly as published. In JSON it
	// is inlined under "intent" when it is compact JSON that round-trips
	// byte for byte, and base64-encoded under "intent_b64" otherwise
	// (pretty-printed or HTML-escapable JSON, invalid UTF-8, garbage), so a
	// replay republishes exactly what the producer sent.
	Intent json.RawMessage
	// Errors are validation problems (reason invalid_intent).
	Errors []string
	// ReplayOf is the DLQ sequence this intent was replayed from, when a
	// replay failed again; it links the chain of dead letters.
	ReplayOf uint64
	// IntentSize is the length of the intent when its bytes were dropped
	// to fit the dead letter in a NATS message (see FitDeadLetter).
	IntentSize int
	// Trimmed names the fields cut to fit the dead letter in a NATS
	// message, in the order they were cut (see FitDeadLetter).
	Trimmed []string
}

// deadLetterJSON is the wire form; the intent is spliced in by MarshalJSON.
type deadLetterJSON struct {
	Receiver     string    `json:"receiver"`
	Reason       string    `json:"reason"`
	LastReason   string    `json:"last_reason,omitempty"`
	Status       int       `json:"status,omitempty"`
	Err          string    `json:"err,omitempty"`
	Description  string    `json:"description,omitempty"`
	Body         string    `json:"body,omitempty"`
	Attempts     int       `json:"attempts"`
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	StreamSeq    uint64    `json:"stream_seq"`
	IntentID     string    `json:"intent_id,omitempty"`
	Errors       []string  `json:"errors,omitempty"`
	ReplayOf     uint64    `json:"replay_of,omitempty"`
	IntentSize   int       `json:"intent_size,omitempty"`
	Trimmed      []string  `json:"trimmed,omitempty"`
	IntentB64    []byte    `json:"intent_b64,omitempty"`
	// Intent is only used when decoding; encoding splices the raw bytes.
	Intent json.RawMessage `json:"intent,omitempty"`
}

// MarshalJSON encodes the dead letter with the intent bytes preserved
// exactly. encoding/json would compact and HTML-escape a RawMessage, so the
// intent is appended verbatim instead.
func (dl DeadLetter) MarshalJSON() ([]byte, error) {
	w := deadLetterJSON{
		Receiver: dl.Receiver, Reason: dl.Reason, LastReason: dl.LastReason, Status: dl.Status, Err: dl.Err,
		Description: dl.Description, Body: dl.Body, Attempts: dl.Attempts,
		FirstAttempt: dl.FirstAttempt, LastAttempt: dl.LastAttempt, StreamSeq: dl.StreamSeq,
		IntentID: dl.IntentID, Errors: dl.Errors, ReplayOf: dl.ReplayOf,
		IntentSize: dl.IntentSize, Trimmed: dl.Trimmed,
	}
	inline := len(dl.Intent) > 0 && inlineJSON(dl.Intent)
	if len(dl.Intent) > 0 && !inline {
		w.IntentB64 = dl.Intent
	}
	out, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("queue: encode dead letter: %w", err)
	}
	if !inline {
		return out, nil
	}
	buf := make([]byte, 0, len(out)+len(dl.Intent)+12)
	buf = append(buf, out[:len(out)-1]...)
	buf = append(buf, `,"intent":`...)
	buf = append(buf, dl.Intent...)
	return append(buf, '}'), nil
}

// UnmarshalJSON decodes either intent form back into the original bytes.
func (dl *DeadLetter) UnmarshalJSON(data []byte) error {
	var w deadLetterJSON
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*dl = DeadLetter{
		Receiver: w.Receiver, Reason: w.Reason, LastReason: w.LastReason, Status: w.Status, Err: w.Err,
		Description: w.Description, Body: w.Body, Attempts: w.Attempts,
		FirstAttempt: w.FirstAttempt, LastAttempt: w.LastAttempt, StreamSeq: w.StreamSeq,
		IntentID: w.IntentID, Errors: w.Errors, ReplayOf: w.ReplayOf,
		IntentSize: w.IntentSize, Trimmed: w.Trimmed,
	}
	switch {
	case len(w.IntentB64) > 0:
		dl.Intent = json.RawMessage(w.IntentB64)
	case len(w.Intent) > 0:
		dl.Intent = append(json.RawMessage(nil), w.Intent...)
	}
	return nil
}

// inlineJSON reports whether b can be embedded as a JSON value and read back
// identical, even after encoding/json re-compacts a MarshalJSON result (as
// json.Marshal does): valid UTF-8 JSON that is already compact and has no
// characters json.Marshal would escape (<, >, &, U+2028, U+2029).
func inlineJSON(b []byte) bool {
	if !utf8.Valid(b) || !json.Valid(b) {
		return false
	}
	if bytes.ContainsAny(b, "<>&\u2028\u2029") {
		return false
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return false
	}
	return bytes.Equal(compact.Bytes(), b)
}

// DeadLetterMsgID is the Nats-Msg-Id of a dead letter: one per receiver and
// intent stream sequence, so the dead letter a worker publishes again after
// crashing before Term deduplicates within the window.
func DeadLetterMsgID(receiver string, streamSeq uint64) string {
	return "dlq-" + Token(receiver) + "-" + strconv.FormatUint(streamSeq, 10)
}

// PublishDeadLetter stores dl on setrelay.dlq.<receiver> and waits for the
// ack. Only after it returns nil may the worker Term the original message:
// a crash in between duplicates a dead letter (deduplicated within the
// window) but never loses one. The record is fitted to the connection's
// real maximum payload first (FitDeadLetter), so an oversized dead letter
// is trimmed rather than refused by the server on every attempt; only a
// budget too small for the untrimmable fields gives ErrDeadLetterTooLarge.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, dl DeadLetter) error {
	_, err := StoreDeadLetter(ctx, js, dl)
	return err
}

// StoreDeadLetter is PublishDeadLetter returning the dead letter's DLQ
// sequence (for a duplicate, the first copy's), which a subject hold
// records.
func StoreDeadLetter(ctx context.Context, js jetstream.JetStream, dl DeadLetter) (uint64, error) {
	if dl.Receiver == "" || dl.Reason == "" {
		return 0, errors.New("queue: dead letter needs a receiver and a reason")
	}
	msg := &nats.Msg{Subject: DLQSubject(dl.Receiver), Header: nats.Header{}}
	if dl.StreamSeq > 0 {
		msg.Header.Set(jetstream.MsgIDHeader, DeadLetterMsgID(dl.Receiver, dl.StreamSeq))
	}
	// The trace context of the failed delivery: Replay puts it back on
	// the replayed intent. Set before sizing: headers count.
	tracing.Inject(ctx, msg.Header)
	data, _, err := FitDeadLetter(dl, payloadBudget(js.Conn(), msg.Header))
	if err != nil {
		return 0, err
	}
	msg.Data = data
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectStream(DLQStream))
	if err != nil {
		return 0, fmt.Errorf("queue: store dead letter for intent %q (receiver %q, seq %d): %w", dl.IntentID, dl.Receiver, dl.StreamSeq, err)
	}
	return ack.Sequence, nil
}
