package ssf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

// pauseForever is how far ahead a receiver's pause is set on the server:
// a receiver-requested pause lasts until the receiver enables the stream.
const pauseForever = 100 * 365 * 24 * time.Hour

// consumerConfig is the durable consumer of st: a configured receiver's
// (queue.ConsumerConfig), except that it starts with the next intent
// published (a new stream gets no history), and a poll stream's consumer
// redelivers until the receiver acknowledges (unlimited deliveries, since
// a poll receiver that is slow to ack must never lose a SET) after
// PollAckWait.
func (s *Server) consumerConfig(st *Stream) jetstream.ConsumerConfig {
	name := ReceiverName(st.ID)
	cc := queue.ConsumerConfig(s.cfg.Queue, name)
	cc.DeliverPolicy = jetstream.DeliverNewPolicy
	// Only this stream's replays: the poll path hands messages out as
	// they come, so another receiver's replay must never reach it.
	cc.FilterSubjects = queue.ReceiverFilters(name)
	cc.Description = "setrelay SSF stream " + st.ID + " (" + st.Delivery.Method + ")"
	cc.Metadata = map[string]string{"setrelay_receiver": name, "setrelay_ssf_stream": st.ID}
	switch {
	case st.Delivery.Method == MethodPoll:
		cc.MaxDeliver = -1
		cc.AckWait = s.cfg.PollAckWait
	case s.cfg.PushConcurrency == 1:
		// One SET of the stream unacknowledged at a time, across every
		// process: a SET waiting for a retry (a Nak with delay) or handed
		// back in an outage stays pending, so the server hands out
		// nothing after it until it is delivered or dead-lettered. That
		// is what keeps held events, and all others, in stored order per
		// subject (SSF 1.0 §8.1.2) through retries, pauses and kills; one
		// push in flight per process would not, since a retry lets the
		// next SET overtake. The cost is head-of-line blocking per stream
		// while a SET is retried.
		cc.MaxAckPending = 1
	}
	return cc
}

// ensureConsumer makes the consumer match st's status: absent when
// disabled, present and paused when paused, present and running when
// enabled. It is idempotent, so the API and every dispatcher may run it.
func (s *Server) ensureConsumer(ctx context.Context, st *Stream) error {
	name := queue.ConsumerName(ReceiverName(st.ID))
	if st.Status == StatusDisabled {
		return s.deleteConsumer(ctx, st.ID)
	}
	stream, err := s.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		return fmt.Errorf("ssf: stream %s: %w", queue.IntentStream, err)
	}
	cc := s.consumerConfig(st)
	if st.Status == StatusPaused {
		cc.PauseUntil = ptr(time.Now().Add(pauseForever))
	}
	cons, err := stream.Consumer(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		_, err = stream.CreateConsumer(ctx, cc)
		if err != nil {
			return fmt.Errorf("ssf: create consumer %s: %w", name, err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("ssf: consumer %s: %w", name, err)
	}
	info := cons.CachedInfo()
	if info.Config.MaxDeliver != cc.MaxDeliver || info.Config.AckWait != cc.AckWait || info.Config.MaxAckPending != cc.MaxAckPending {
		// The delivery method or ssf.push_concurrency changed, or the
		// consumer predates ordered push: keep the consumer (and its
		// backlog), change how it redelivers.
		upd := info.Config
		upd.MaxDeliver, upd.AckWait, upd.Description = cc.MaxDeliver, cc.AckWait, cc.Description
		upd.MaxAckPending = cc.MaxAckPending
		if _, err := stream.UpdateConsumer(ctx, upd); err != nil {
			return fmt.Errorf("ssf: update consumer %s: %w", name, err)
		}
	}
	switch {
	case st.Status == StatusPaused && !info.Paused:
		if _, err := s.js.PauseConsumer(ctx, queue.IntentStream, name, time.Now().Add(pauseForever)); err != nil {
			return fmt.Errorf("ssf: pause consumer %s: %w", name, err)
		}
	case st.Status == StatusEnabled && info.Paused && info.PauseRemaining > pauseForever/2:
		// Resume only a receiver's pause; a short pause is the worker's
		// own outage cool-down and ends by itself.
		if _, err := s.js.ResumeConsumer(ctx, queue.IntentStream, name); err != nil {
			return fmt.Errorf("ssf: resume consumer %s: %w", name, err)
		}
	}
	return nil
}

func (s *Server) deleteConsumer(ctx context.Context, id string) error {
	err := s.js.DeleteConsumer(ctx, queue.IntentStream, queue.ConsumerName(ReceiverName(id)))
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("ssf: delete consumer of stream %s: %w", id, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }
