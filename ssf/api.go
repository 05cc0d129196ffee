package ssf

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// handleStreams is the configuration endpoint (§8.1.1).
func (s *Server) handleStreams(w http.ResponseWriter, r *http.Request, p *Principal) {
	if !allowed(w, r, http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete) {
		return
	}
	scope := ScopeManage
	if r.Method == http.MethodGet {
		scope = ScopeRead
	}
	if !need(w, p, scope) {
		return
	}
	switch r.Method {
	case http.MethodPost:
		s.createStream(w, r, p)
	case http.MethodGet:
		s.readStreams(w, r, p)
	case http.MethodPatch:
		s.updateStream(w, r, p, false)
	case http.MethodPut:
		s.updateStream(w, r, p, true)
	case http.MethodDelete:
		s.deleteStream(w, r, p)
	}
}

// createStream: 201 with the whole configuration; 400 for a bad body, 409
// when the client already has as many streams as it may.
func (s *Server) createStream(w http.ResponseWriter, r *http.Request, p *Principal) {
	var req request
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.StreamID != nil {
		s.fail(w, r, badRequest("stream_id is assigned by the transmitter; leave it out of a create request"))
		return
	}
	if err := s.checkTransmitterFields(&req, nil, p); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	mine, err := s.clientStreams(ctx, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(mine) >= s.cfg.MaxStreamsPerClient {
		writeError(w, http.StatusConflict, "stream_limit", "this client already has the most streams this transmitter allows; update or delete one")
		return
	}
	id, err := newStreamID()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.now().UTC()
	st := &Stream{ID: id, Owner: p.ClientID, Audience: p.Audience, Status: StatusEnabled, Created: now, Updated: now}
	if err := s.applyReceiverFields(ctx, st, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	// The consumer first: a stream in the registry is one the dispatchers
	// serve, so its consumer must be there when they see it.
	if err := s.ensureConsumer(ctx, st); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.streams.create(ctx, st); err != nil {
		_ = s.deleteConsumer(context.WithoutCancel(ctx), st.ID)
		s.fail(w, r, err)
		return
	}
	s.m.streamOps.WithLabelValues("create").Inc()
	s.log.Info("stream created", zap.String("stream_id", st.ID), zap.String("client", p.ClientID), zap.String("method", st.Delivery.Method))
	writeJSON(w, http.StatusCreated, s.view(st))
}

// clientStreams lists p's streams.
func (s *Server) clientStreams(ctx context.Context, p *Principal) ([]*Stream, error) {
	all, err := s.streams.all(ctx)
	if err != nil {
		return nil, err
	}
	var out []*Stream
	for _, st := range all {
		if st.Owner == p.ClientID {
			out = append(out, s.current(st))
		}
	}
	return out, nil
}

// readStreams: one stream with ?stream_id=, else an array of the client's.
func (s *Server) readStreams(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx := r.Context()
	if id := r.URL.Query().Get("stream_id"); id != "" {
		st, _, err := s.owned(ctx, id, p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.view(st))
		return
	}
	mine, err := s.clientStreams(ctx, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]wireStream, 0, len(mine))
	for _, st := range mine {
		out = append(out, s.view(st))
	}
	writeJSON(w, http.StatusOK, out)
}

// updateStream is PATCH (replace=false: members present change) and PUT
// (replace=true: the receiver-supplied members are replaced whole).
func (s *Server) updateStream(w http.ResponseWriter, r *http.Request, p *Principal, replace bool) {
	var req request
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.StreamID == nil || *req.StreamID == "" {
		s.fail(w, r, badRequest("stream_id is required in the body"))
		return
	}
	ctx := r.Context()
	if _, _, err := s.owned(ctx, *req.StreamID, p); err != nil {
		s.fail(w, r, err)
		return
	}
	var before Stream
	st, err := s.streams.modify(ctx, *req.StreamID, func(st *Stream) error {
		before = *st
		if st.Owner != p.ClientID {
			return errNotFound
		}
		if err := s.checkTransmitterFields(&req, st, p); err != nil {
			return err
		}
		if err := s.applyReceiverFields(ctx, st, &req, replace); err != nil {
			return err
		}
		st.Updated = s.now().UTC()
		return nil
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if before.Delivery.Method != st.Delivery.Method {
		if err := s.ensureConsumer(ctx, st); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	op := "update"
	if replace {
		op = "replace"
	}
	s.m.streamOps.WithLabelValues(op).Inc()
	writeJSON(w, http.StatusOK, s.view(st))
}

// deleteStream removes the stream, its consumer (releasing what only it
// held) and its subjects: 204.
func (s *Server) deleteStream(w http.ResponseWriter, r *http.Request, p *Principal) {
	ctx := r.Context()
	id := r.URL.Query().Get("stream_id")
	if id == "" {
		s.fail(w, r, badRequest("stream_id is required as a query parameter"))
		return
	}
	if err := s.DeleteStream(ctx, id, p.ClientID); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// DeleteStream deletes stream id. owner, when non-empty, must own it (the
// API); the operators' CLI passes "".
func (s *Server) DeleteStream(ctx context.Context, id, owner string) error {
	for attempt := 0; ; attempt++ {
		if !validStreamID(id) {
			return errNotFound
		}
		st, rev, err := s.streams.get(ctx, id)
		if err != nil {
			return err
		}
		if owner != "" && st.Owner != owner {
			return errNotFound
		}
		// The registry entry goes first: the dispatchers stop serving the
		// stream when they see it go, and then the consumer is removed.
		err = s.streams.remove(ctx, id, rev)
		if errors.Is(err, errConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return err
		}
		if err := s.deleteConsumer(ctx, id); err != nil {
			return err
		}
		if s.subjects == nil {
			s.log.Warn("stream deleted; its subjects were not (no access to the subjects bucket); they are unreachable and harmless", zap.String("stream_id", id))
		} else if err := s.subjects.purge(ctx, id); err != nil {
			s.log.Warn("stream deleted, but some of its subjects were not; they are unreachable and harmless", zap.String("stream_id", id), zap.Error(err))
		}
		s.m.streamOps.WithLabelValues("delete").Inc()
		s.log.Info("stream deleted", zap.String("stream_id", id), zap.String("client", st.Owner))
		return nil
	}
}

// statusBody is the status endpoint's request and response (§8.1.2).
type statusBody struct {
	StreamID string `json:"stream_id"`
	Status   string `json:"status"`
	Reason   string `json:"reason,omitempty"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request, p *Principal) {
	if !allowed(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	ctx := r.Context()
	if r.Method == http.MethodGet {
		if !need(w, p, ScopeRead) {
			return
		}
		id := r.URL.Query().Get("stream_id")
		if id == "" {
			s.fail(w, r, badRequest("stream_id is required as a query parameter"))
			return
		}
		st, _, err := s.owned(ctx, id, p)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		status, reason := st.EffectiveStatus()
		writeJSON(w, http.StatusOK, statusBody{StreamID: st.ID, Status: status, Reason: reason})
		return
	}
	if !need(w, p, ScopeManage) {
		return
	}
	var req statusBody
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case req.StreamID == "":
		s.fail(w, r, badRequest("stream_id is required"))
		return
	case req.Status != StatusEnabled && req.Status != StatusPaused && req.Status != StatusDisabled:
		s.fail(w, r, badRequest("status must be enabled, paused or disabled"))
		return
	case len(req.Reason) > MaxDescription:
		s.fail(w, r, badRequest("reason is longer than %d bytes", MaxDescription))
		return
	}
	if _, _, err := s.owned(ctx, req.StreamID, p); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.SetStatus(ctx, req.StreamID, p.ClientID, req.Status, req.Reason)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Enabling a stream the transmitter holds back says the receiver has
	// fixed its side: probe now rather than at the next backoff step. Until
	// the probe gets through, the stream reads paused.
	s.requestProbe(ctx, st)
	status, reason := st.EffectiveStatus()
	writeJSON(w, http.StatusOK, statusBody{StreamID: st.ID, Status: status, Reason: reason})
}

// SetStatus changes a stream's status and applies it to its consumer.
// owner, when non-empty, must own the stream.
//
// Order matters for "disabled": the registry says disabled first, so
// dispatchers stop pushing, then the consumer is deleted, dropping what it
// held. Re-enabling creates a fresh consumer that starts with the next
// intent, so nothing published while disabled is ever delivered.
func (s *Server) SetStatus(ctx context.Context, id, owner, status, reason string) (*Stream, error) {
	if status == StatusEnabled {
		// Enabling: the consumer first (resumed, or created afresh after
		// a disable), so a dispatcher that sees "enabled" finds it
		// running and does not start on a consumer still paused.
		cur, _, err := s.streams.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if owner != "" && cur.Owner != owner {
			return nil, errNotFound
		}
		next := *cur
		next.Status = StatusEnabled
		if err := s.ensureConsumer(ctx, &next); err != nil {
			return nil, err
		}
	}
	st, err := s.streams.modify(ctx, id, func(st *Stream) error {
		if owner != "" && st.Owner != owner {
			return errNotFound
		}
		if st.Status == StatusDisabled && status != StatusDisabled {
			st.Generation++
		}
		st.Status, st.Reason, st.Updated = status, reason, s.now().UTC()
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Pausing and disabling: the registry first, so dispatchers stop
	// pushing, then the consumer is paused or deleted. (Enabling again
	// is idempotent.)
	if err := s.ensureConsumer(ctx, st); err != nil {
		return nil, err
	}
	s.m.streamOps.WithLabelValues("status_" + status).Inc()
	s.log.Info("stream status changed", zap.String("stream_id", id), zap.String("status", status))
	return st, nil
}

// verifyBody is the verification request (§8.1.4.2).
type verifyBody struct {
	StreamID string  `json:"stream_id"`
	State    *string `json:"state"`
}

// handleVerify queues a verification SET for the stream: 204, or 429 with
// Retry-After when the last one was less than min_verification_interval ago.
func (s *Server) handleVerify(w http.ResponseWriter, r *http.Request, p *Principal) {
	if !allowed(w, r, http.MethodPost) || !need(w, p, ScopeManage) {
		return
	}
	var req verifyBody
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.StreamID == "" {
		s.fail(w, r, badRequest("stream_id is required"))
		return
	}
	if req.State != nil && len(*req.State) > MaxDescription {
		s.fail(w, r, badRequest("state is longer than %d bytes", MaxDescription))
		return
	}
	ctx := r.Context()
	if _, _, err := s.owned(ctx, req.StreamID, p); err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.now()
	var wait time.Duration
	var prev time.Time
	// The last verification time is claimed with compare-and-set, so two
	// processes cannot both let a request through inside the interval.
	st, err := s.streams.modify(ctx, req.StreamID, func(st *Stream) error {
		if st.Status == StatusDisabled {
			// §8.1.4.2: a 204 promises the event "has been or will be"
			// transmitted, and a disabled stream transmits nothing and
			// holds nothing, so the request is invalid (400), and it
			// does not use up the verification interval. A paused
			// stream holds the event and sends it once enabled: 204.
			return &apiError{status: http.StatusBadRequest, code: "stream_disabled",
				msg: "the stream is disabled, so no verification event can be sent; enable it (POST the status endpoint) and ask again"}
		}
		if next := st.LastVerified.Add(s.cfg.MinVerificationInterval); now.Before(next) {
			wait = next.Sub(now)
			return errTooSoon
		}
		prev, st.LastVerified = st.LastVerified, now.UTC()
		return nil
	})
	if errors.Is(err, errTooSoon) {
		s.m.verifications.WithLabelValues("too_soon").Inc()
		w.Header().Set("Retry-After", retryAfter(wait))
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "verification was requested less than min_verification_interval ago; wait for Retry-After")
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	event := map[string]any{}
	if req.State != nil {
		event["state"] = *req.State
	}
	if err := s.publishStreamEvent(ctx, st, "verification", event); err != nil {
		// Not queued, so not a verification: give the interval back
		// (§8.1.1: no 429 to a receiver within min_verification_interval),
		// unless another request has claimed it since.
		if _, rerr := s.streams.modify(context.WithoutCancel(ctx), st.ID, func(cur *Stream) error {
			if !cur.LastVerified.Equal(now.UTC()) {
				return errNoChange
			}
			cur.LastVerified = prev
			return nil
		}); rerr != nil && !errors.Is(rerr, errNoChange) && !errors.Is(rerr, errNotFound) {
			s.log.Warn("a failed verification request still counts toward min_verification_interval", zap.String("stream_id", st.ID), zap.Error(rerr))
		}
		s.fail(w, r, err)
		return
	}
	s.m.verifications.WithLabelValues("queued").Inc()
	w.WriteHeader(http.StatusNoContent)
}

var errTooSoon = errors.New("too soon")

func retryAfter(d time.Duration) string {
	secs := int((d + time.Second - 1) / time.Second)
	return itoa(max(secs, 1))
}
