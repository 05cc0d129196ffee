package ssf

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/worker"
)

// A push stream's worker blocks it, as it blocks a configured receiver,
// when delivery fails in a way only a change of configuration can fix: the
// endpoint answers 404, 405, 410, 415 or 406 or redirects, its certificate
// does not fit, it refuses the authorization_header, it rejects this
// transmitter's key, issuer or audience or answers 403 for several SETs in a
// row, or the signing key is unusable. Nothing is
// dead-lettered; the backlog is held and the worker probes.
//
// For the receiver that is the transmitter pausing the stream (§8.1.5), so:
//
//   - the registry entry records the block (Stream.Blocked), once for the
//     fleet (compare-and-set), and the status endpoint answers "paused"
//     with the reason until delivery works again;
//   - the process that recorded it queues a Stream Updated event (status
//     paused, the reason). The stream's endpoint cannot take it while it is
//     broken, so it is held with the backlog and arrives when delivery works
//     again, followed by the Stream Updated event "enabled" queued when the
//     probe succeeds: together they tell the receiver why its SETs were
//     late. (A poll stream is never blocked: its receiver fetches.)
//   - a receiver that has fixed its side can ask for a probe at once by
//     POSTing status "enabled", or by updating the stream's delivery.

// streamObserver passes a push stream's worker block changes to its
// registry entry and receiver. It implements worker.BlockObserver, so the
// worker does not need to know about SSF.
type streamObserver struct {
	s  *Server
	id string
}

func (o streamObserver) Blocked(ctx context.Context, _ string, reason string) {
	o.s.markBlocked(ctx, o.id, reason)
}

func (o streamObserver) Unblocked(ctx context.Context, _ string) { o.s.markUnblocked(ctx, o.id) }

var _ worker.BlockObserver = streamObserver{}

// blockedReason is the reason a receiver is told for a block, in its
// terms: what is wrong with the stream's delivery, never a credential.
func blockedReason(code string) string {
	why := "delivery fails in a way that needs a configuration change (" + code + ")"
	switch code {
	case push.ReasonEndpointNotFound:
		why = "the endpoint_url answers 404, 405 or 410, or refuses application/secevent+jwt (415, 406)"
	case push.ReasonRedirect:
		why = "the endpoint_url redirects; give the final URL"
	case push.ReasonNonPublicAddress:
		why = "the endpoint_url's host now resolves to a loopback, private or otherwise internal address"
	case push.ReasonTLS:
		why = "the endpoint_url's TLS certificate is not valid for its name or not trusted"
	case push.ReasonAuthenticationFailed:
		why = "the endpoint refuses the stream's authorization_header"
	case push.ReasonInvalidKey:
		why = "the endpoint rejects the signing key (invalid_key): fetch the transmitter's jwks_uri again"
	case push.ReasonInsufficientScope:
		why = "the endpoint says the stream's authorization_header lacks a scope it needs (insufficient_scope)"
	case push.ReasonForbidden:
		why = "the endpoint answers 403 to every SET: check its allow-list and the stream's authorization_header"
	case push.ReasonInvalidIssuer:
		why = "the endpoint rejects the issuer (invalid_issuer)"
	case push.ReasonInvalidAudience:
		why = "the endpoint rejects the audience (invalid_audience)"
	case worker.ReasonKeyUnusable:
		why = "the transmitter's signing key is unavailable"
	}
	return "transmitter paused delivery: " + why + "; events are held and delivered once it works again"
}

// EffectiveStatus is the status a receiver is shown: an enabled push
// stream that the transmitter has blocked is paused, with the reason, until
// delivery works again.
func (st *Stream) EffectiveStatus() (status, reason string) {
	if st.Status == StatusEnabled && st.Blocked != "" {
		return StatusPaused, blockedReason(st.Blocked)
	}
	return st.Status, st.Reason
}

// markBlocked records that the worker blocked the stream and, in the one
// process whose compare-and-set records it, queues the Stream Updated event.
func (s *Server) markBlocked(ctx context.Context, id, reason string) {
	now := s.now().UTC()
	st, err := s.streams.modify(ctx, id, func(cur *Stream) error {
		if cur.Status != StatusEnabled || cur.Blocked != "" {
			return errNoChange // already recorded, or the receiver paused it
		}
		cur.Blocked, cur.BlockedSince = reason, now
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNoChange) {
			s.log.Warn("push stream blocked, but recording it in the registry failed; its status still reads enabled", zap.String("stream_id", id), zap.Error(err))
		}
		return
	}
	s.m.streamOps.WithLabelValues("blocked").Inc()
	status, why := st.EffectiveStatus()
	if _, err := s.queueStreamEvent(ctx, st, "stream-updated", map[string]any{"status": status, "reason": why}); err != nil {
		s.log.Warn("push stream blocked; its Stream Updated event could not be queued", zap.String("stream_id", id), zap.Error(err))
	}
	s.log.Warn("push stream paused by the transmitter: its delivery needs a configuration change; events are held",
		zap.String("stream_id", id), zap.String("client", st.Owner), zap.String("reason", reason))
}

// markUnblocked clears the block once a probe got through and, in the one
// process whose compare-and-set clears it, queues the Stream Updated event
// saying the stream is enabled again.
func (s *Server) markUnblocked(ctx context.Context, id string) {
	var since time.Time
	st, err := s.streams.modify(ctx, id, func(cur *Stream) error {
		if cur.Blocked == "" {
			return errNoChange
		}
		since = cur.BlockedSince
		cur.Blocked, cur.BlockedSince = "", time.Time{}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errNoChange) && !errors.Is(err, errNotFound) {
			s.log.Warn("push stream unblocked, but clearing the registry failed", zap.String("stream_id", id), zap.Error(err))
		}
		return
	}
	s.m.streamOps.WithLabelValues("unblocked").Inc()
	if st.Status == StatusEnabled {
		event := map[string]any{"status": StatusEnabled, "reason": "delivery works again; held events follow"}
		if _, err := s.queueStreamEvent(ctx, st, "stream-updated", event); err != nil {
			s.log.Warn("push stream unblocked; its Stream Updated event could not be queued", zap.String("stream_id", id), zap.Error(err))
		}
	}
	s.log.Info("push stream delivering again", zap.String("stream_id", id), zap.Duration("blocked_for", s.now().Sub(since).Round(time.Second)))
}

// requestProbe asks the stream's worker to probe a blocked stream now,
// when the receiver signals it has fixed its side. Best effort: the
// worker's own probes continue regardless.
func (s *Server) requestProbe(ctx context.Context, st *Stream) {
	if st.Blocked == "" || st.Status != StatusEnabled {
		return
	}
	if err := worker.RequestProbe(ctx, s.js, ReceiverName(st.ID)); err != nil {
		s.log.Debug("asking the blocked stream's worker for a probe failed; it probes on its own schedule", zap.String("stream_id", st.ID), zap.Error(err))
	}
}
