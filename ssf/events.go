package ssf

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// publishStreamEvent queues an SSF stream event (verification,
// stream-updated) for st alone. It goes on the stream's own subject
// (queue.ReplaySubject of its receiver name), which only its consumer
// reads and which bypasses the event-type and subject filters, and so is
// delivered by the stream's method like any other SET: signed, retried,
// dead-lettered. Its subject is the stream itself,
// {"format":"opaque","id":stream_id}, in the top-level sub_id (§8.1.4.2).
//
// A disabled stream has no consumer: the event is not stored, since a
// disabled stream transmits nothing.
func (s *Server) publishStreamEvent(ctx context.Context, st *Stream, name string, event map[string]any) error {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	id := "ssf-" + name + "-" + st.ID + "-" + strconv.FormatInt(s.now().UnixNano(), 36) + "-" + hex.EncodeToString(nonce[:])
	in := &intent.Intent{
		ID:      id,
		Type:    "ssf." + name,
		Subject: map[string]any{"format": "opaque", "id": st.ID},
		Event:   event,
	}
	data, err := queue.Encode(in, intent.Options{})
	if err != nil {
		return fmt.Errorf("ssf: %s event: %w", name, err)
	}
	msg := nats.NewMsg(queue.ReplaySubject(ReceiverName(st.ID)))
	msg.Data = data
	msg.Header.Set(nats.MsgIdHdr, id)
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("ssf: queue %s event for stream %s: %w", name, st.ID, err)
	}
	return nil
}

func itoa(n int) string { return strconv.Itoa(n) }
