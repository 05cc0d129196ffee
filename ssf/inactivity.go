package ssf

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// ReasonInactivity is the reason of a stream paused for inactivity.
const ReasonInactivity = "inactivity_timeout"

// touch records receiver activity on st (any authenticated request about
// it), at most once per tenth of the timeout so a busy poller does not
// write the registry on every poll. Best effort: a lost touch only brings
// the pause a little closer.
func (s *Server) touch(ctx context.Context, st *Stream) {
	timeout := s.cfg.InactivityTimeout
	if timeout <= 0 {
		return
	}
	now := s.now()
	if now.Sub(st.LastActivity) < timeout/10 {
		return
	}
	_, err := s.streams.modify(ctx, st.ID, func(cur *Stream) error {
		if now.Sub(cur.LastActivity) < timeout/10 {
			return errNoChange
		}
		cur.LastActivity = now.UTC()
		return nil
	})
	if err == nil {
		st.LastActivity = now.UTC()
	}
}

var errNoChange = errors.New("no change")

// inactive reports whether st has waited out the inactivity timeout.
func (s *Server) inactive(st *Stream, now time.Time) bool {
	timeout := s.cfg.InactivityTimeout
	if timeout <= 0 || st.Status != StatusEnabled {
		return false
	}
	last := st.LastActivity
	if last.IsZero() {
		last = st.Created
	}
	return now.Sub(last) >= timeout
}

// pauseInactive pauses every enabled stream whose receiver has been
// inactive for the timeout: §8.1.1 lets the transmitter pause it, and
// §8.1.5 requires the Stream Updated event, sent before the pause (see
// notifyStatus). Every process runs this; a compare-and-set claim on the
// stream lets exactly one of them act on each.
func (s *Server) pauseInactive(ctx context.Context, notifyWait time.Duration) {
	all, err := s.streams.all(ctx)
	if err != nil {
		s.log.Debug("inactivity check: cannot list streams", zap.Error(err))
		return
	}
	now := s.now()
	for _, st := range all {
		if !s.inactive(st, now) {
			continue
		}
		claimed, err := s.streams.modify(ctx, st.ID, func(cur *Stream) error {
			if !s.inactive(cur, now) || now.Sub(cur.InactivityPause) < s.cfg.InactivityTimeout {
				return errNoChange
			}
			cur.InactivityPause = now.UTC()
			return nil
		})
		if err != nil {
			continue // another process has it, or the receiver came back
		}
		if err := s.notifyStatus(ctx, claimed, StatusPaused, ReasonInactivity, notifyWait); err != nil {
			s.log.Warn("inactivity pause: Stream Updated event not queued; pausing anyway", zap.String("stream_id", st.ID), zap.Error(err))
		}
		if _, err := s.SetStatus(ctx, st.ID, "", StatusPaused, ReasonInactivity); err != nil {
			s.log.Warn("inactivity pause failed; will try again", zap.String("stream_id", st.ID), zap.Error(err))
			continue
		}
		s.log.Info("stream paused for inactivity", zap.String("stream_id", st.ID), zap.String("client", st.Owner), zap.Duration("inactivity_timeout", s.cfg.InactivityTimeout))
	}
}
