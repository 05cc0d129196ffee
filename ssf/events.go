package ssf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// publishStreamEvent queues an SSF stream event (verification,
// stream-updated) for st alone: an intent on the intents subject whose
// receivers list names only st's receiver and whose subject is the stream
// itself, {"format":"opaque","id":stream_id}, which goes in the top-level
// sub_id (§8.1.4.2). It is delivered by the stream's method like any other
// SET (signed, retried, dead-lettered); every other receiver skips it.
// The stream's type and subject filters let it through (ownStreamEvent).
//
// A disabled stream has no consumer: the event is not stored for it, since
// a disabled stream transmits nothing.
func (s *Server) publishStreamEvent(ctx context.Context, st *Stream, name string, event map[string]any) error {
	_, err := s.queueStreamEvent(ctx, st, name, event)
	return err
}

// queueStreamEvent is publishStreamEvent returning the event's sequence in
// the intents stream.
func (s *Server) queueStreamEvent(ctx context.Context, st *Stream, name string, event map[string]any) (uint64, error) {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return 0, err
	}
	id := "ssf-" + name + "-" + st.ID + "-" + strconv.FormatInt(s.now().UnixNano(), 36) + "-" + hex.EncodeToString(nonce[:])
	in := &intent.Intent{
		ID:        id,
		Type:      "ssf." + name,
		Subject:   map[string]any{"format": "opaque", "id": st.ID},
		Event:     event,
		Receivers: []string{ReceiverName(st.ID)},
	}
	data, err := queue.Encode(in, intent.Options{})
	if err != nil {
		return 0, fmt.Errorf("ssf: %s event: %w", name, err)
	}
	msg := nats.NewMsg(queue.IntentSubject)
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, id)
	ack, err := s.js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("ssf: queue %s event for stream %s: %w", name, st.ID, err)
	}
	return ack.Sequence, nil
}

// notifyStatus sends the Stream Updated event (§8.1.5) for a status change
// the transmitter makes on its own (an operator's `setrelay streams
// status`), so the receiver learns of it.
//
// Enabling: the event follows the change, and is delivered with what the
// stream held. Pausing or disabling: the event goes first, and the change
// waits (up to wait) until the receiver has taken it, since a paused
// stream would hold it and a disabled one drop it. If the receiver does
// not take it in time the change is made anyway (an operator pausing a
// stream whose receiver is down must not be blocked by it): the event
// then arrives when the stream is enabled again (paused), or not at all
// (disabled), and the log says so.
func (s *Server) notifyStatus(ctx context.Context, st *Stream, status, reason string, wait time.Duration) error {
	event := map[string]any{"status": status}
	if reason != "" {
		event["reason"] = reason
	}
	if status == StatusEnabled || st.Status != StatusEnabled {
		// Nothing is delivering now: the event is queued and goes out when
		// the stream next delivers.
		_, err := s.queueStreamEvent(ctx, st, "stream-updated", event)
		return err
	}
	seq, err := s.queueStreamEvent(ctx, st, "stream-updated", event)
	if err != nil {
		return err
	}
	cons, err := s.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ReceiverName(st.ID)))
	if err != nil {
		return fmt.Errorf("ssf: consumer of stream %s: %w", st.ID, err)
	}
	deadline := time.Now().Add(wait)
	for {
		info, err := cons.Info(ctx)
		if err == nil && info.AckFloor.Stream >= seq {
			return nil
		}
		if time.Now().After(deadline) {
			s.log.Warn("the receiver did not take the Stream Updated event in time; changing the status anyway",
				zap.String("stream_id", st.ID), zap.String("status", status), zap.Duration("waited", wait))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// Stream event types: about a stream itself, addressed to it alone.
const (
	typeVerification  = intent.SSFPrefix + "verification"
	typeStreamUpdated = intent.SSFPrefix + "stream-updated"
)

// ownStreamEvent reports whether in is a stream event this transmitter
// addressed to st: an SSF stream event type, st's receiver named in
// receivers, and st itself as the subject. Such an event passes st's type
// and subject filters; any other intent of those types does not.
func ownStreamEvent(st *Stream, in *intent.Intent) bool {
	if in.EventType != typeVerification && in.EventType != typeStreamUpdated {
		return false
	}
	if len(in.Receivers) != 1 || in.Receivers[0] != ReceiverName(st.ID) {
		return false
	}
	f, _ := in.Subject["format"].(string)
	id, _ := in.Subject["id"].(string)
	return f == "opaque" && id == st.ID && len(in.Subject) == 2
}
