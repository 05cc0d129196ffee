package ssf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/setrelay/setrelay/intent"
)

// Subject states in the subjects bucket.
const (
	subjectAdded   = "added"
	subjectRemoved = "removed"
)

// maxComplexMembers bounds the members of a complex subject: matching an
// event's complex subject looks up every non-empty subset of its members.
const maxComplexMembers = 8

// subjectStore is the subjects bucket: one record per (stream, subject),
// "<stream id>.<hash of the subject's canonical JSON>", and the complex
// subject match index beside it (subjectindex.go), so a stream may have
// millions of subjects and matching an event costs a few key look-ups,
// never a scan or a copy in memory.
type subjectStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
	nc *nats.Conn
	// apiPrefix is the JetStream API prefix, for leader reads.
	apiPrefix string
	// crash, in tests only, interrupts a change before its commit.
	crash crashHook
	// tooWide counts events whose complex subject has more members than
	// the index can look up, settled without delivery.
	tooWide func()
}

func newSubjectStore(js jetstream.JetStream, kv jetstream.KeyValue) *subjectStore {
	o := js.Options()
	prefix := "$JS.API."
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		prefix = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return &subjectStore{kv: kv, js: js, nc: js.Conn(), apiPrefix: prefix}
}

// subjectEntry is a subject record. Indexed says a complex subject is
// counted in the match index; records written before the index existed
// lack it and are read the old way (legacy look-ups) until changed.
type subjectEntry struct {
	Subject  json.RawMessage `json:"subject"`
	Verified bool            `json:"verified"`
	State    string          `json:"state"`
	Indexed  bool            `json:"indexed,omitempty"`
}

// canonical is the subject's canonical JSON (intent.SubjectKey, the one
// definition of subject equality, shared with per-subject ordering).
func canonical(subject map[string]any) []byte { return intent.SubjectKey(subject) }

func subjectKey(streamID string, subject map[string]any) string {
	sum := sha256.Sum256(canonical(subject))
	return streamID + "." + hex.EncodeToString(sum[:20])
}

func isComplex(subject map[string]any) bool           { return intent.IsComplexSubject(subject) }
func members(subject map[string]any) map[string]any   { return intent.SubjectMembers(subject) }
func normalise(subject map[string]any) map[string]any { return intent.NormaliseSubject(subject) }

// checkSubject accepts an RFC 9493 / SSF subject that an event could
// carry: intent.ValidateSubject's rules (every member a format requires,
// nothing else, known formats only; members-only complex subjects too),
// and for a complex subject at most
// maxComplexMembers members, which the match index can look up.
func checkSubject(subject map[string]any) error {
	v := subject
	if _, ok := subject["format"]; !ok && isComplex(subject) {
		// The API also takes a complex subject written members-only, as
		// the SSF drafts did; it is checked as the complex subject it is.
		v = map[string]any{"format": "complex"}
		for k, m := range subject {
			v[k] = m
		}
	}
	if err := intent.ValidateSubject(v); err != nil {
		var ve *intent.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("invalid subject: %s", strings.Join(ve.Problems(), "; "))
		}
		return err
	}
	if isComplex(subject) && len(members(subject)) > maxComplexMembers {
		return fmt.Errorf("a complex subject may have at most %d members", maxComplexMembers)
	}
	return nil
}

// wants decides whether an event about subject goes to st. With default
// ALL, every subject does unless it matches a removed one; with NONE, only
// subjects matching an added (and verified) one. A removed match wins over
// an added one. An event without a subject goes to every stream that wants
// its type. A stream that never had a subject added or removed is decided
// without any look-up. A simple subject costs one look-up; a complex one
// one per non-empty subset of its members (§8.1.3.1, subjectindex.go).
func (ss *subjectStore) wants(ctx context.Context, st *Stream, def string, subject map[string]any) (bool, error) {
	if subject == nil {
		return true, nil
	}
	if !st.HasSubjects {
		return def == DefaultSubjectsAll, nil
	}
	var added, removed bool
	if isComplex(subject) {
		m := members(subject)
		if len(m) > maxComplexMembers {
			// Too many members to look up every subset: settle without
			// delivery rather than risk sending an event about a removed
			// subject. Counted (setrelay_ssf_subjects_too_wide_total).
			if ss.tooWide != nil {
				ss.tooWide()
			}
			return false, nil
		}
		var err error
		if added, removed, err = ss.complexMatch(ctx, st, m); err != nil {
			return false, err
		}
	} else {
		se, err := ss.record(ctx, subjectKey(st.ID, subject))
		if err != nil {
			return false, err
		}
		if se != nil {
			// An unverified subject (verified: false) does not open the
			// stream to its events: §9 information harvesting.
			added = se.State == subjectAdded && se.Verified
			removed = se.State == subjectRemoved
		}
	}
	if removed {
		return false, nil
	}
	return added || def == DefaultSubjectsAll, nil
}

// purge deletes every subject of a deleted stream.
func (ss *subjectStore) purge(ctx context.Context, streamID string) error {
	lister, err := ss.kv.ListKeysFiltered(ctx, streamID+".>")
	if err != nil {
		return err
	}
	for k := range lister.Keys() {
		if err := ss.kv.Purge(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// subjectBody is the add and remove subject request (§8.1.3.2, §8.1.3.3).
type subjectBody struct {
	StreamID string         `json:"stream_id"`
	Subject  map[string]any `json:"subject"`
	Verified *bool          `json:"verified"`
}

func (s *Server) handleAddSubject(w http.ResponseWriter, r *http.Request, p *Principal) {
	s.changeSubject(w, r, p, true)
}

func (s *Server) handleRemoveSubject(w http.ResponseWriter, r *http.Request, p *Principal) {
	s.changeSubject(w, r, p, false)
}

// changeSubject adds (200) or removes (204) a subject. Whether the
// transmitter knows the subject is never revealed (§9 subject probing):
// any well-formed subject is accepted and recorded. 429 when the client
// changes subjects faster than the configured rate.
func (s *Server) changeSubject(w http.ResponseWriter, r *http.Request, p *Principal, add bool) {
	if !allowed(w, r, http.MethodPost) || !need(w, p, ScopeManage) {
		return
	}
	var req subjectBody
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	switch {
	case req.StreamID == "":
		s.fail(w, r, badRequest("stream_id is required"))
		return
	case req.Subject == nil:
		s.fail(w, r, badRequest("subject is required"))
		return
	case !add && req.Verified != nil:
		s.fail(w, r, badRequest("verified applies to add_subject only"))
		return
	}
	if err := checkSubject(req.Subject); err != nil {
		s.fail(w, r, badRequest("%v", err))
		return
	}
	ctx := r.Context()
	st, _, err := s.owned(ctx, req.StreamID, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.subjectLimiter(p.ClientID).Allow() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "too_many_requests", "subjects are being changed faster than this transmitter allows; slow down")
		return
	}
	if !st.HasSubjects {
		// A stream's first subject: every record it will have is written
		// with the match index, so no legacy look-ups are needed.
		if st, err = s.streams.modify(ctx, st.ID, func(st *Stream) error {
			if !st.HasSubjects {
				st.HasSubjects, st.SubjectIndex = true, true
			}
			return nil
		}); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	norm := normalise(req.Subject)
	key := subjectKey(st.ID, norm)
	verified := req.Verified == nil || *req.Verified
	raw, _ := json.Marshal(req.Subject)
	var next *subjectEntry // nil: no record
	switch {
	case add:
		next = &subjectEntry{Subject: raw, Verified: verified, State: subjectAdded}
	case s.cfg.DefaultSubjects == DefaultSubjectsAll:
		// Under ALL a removal must be remembered: it is what stops the
		// subject's events.
		next = &subjectEntry{Subject: raw, State: subjectRemoved}
	}
	if err = s.subjects.set(ctx, st.ID, norm, next); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.fail(w, r, fmt.Errorf("ssf: store subject: %w", err))
		return
	}
	op := "remove"
	if add {
		op = "add"
	}
	s.m.subjectOps.WithLabelValues(st.ID, op).Inc()
	// Removals take effect at once and are logged with the client that
	// made them, for the §9 malicious-removal consideration: only the
	// stream's owner can remove, and the log shows who did and when.
	s.log.Info("stream subject changed", zap.String("stream_id", st.ID), zap.String("client", p.ClientID), zap.String("op", op), zap.String("subject_key", key[strings.IndexByte(key, '.')+1:]))
	if add {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) subjectLimiter(client string) *rate.Limiter {
	if l, ok := s.limiters.Load(client); ok {
		return l.(*rate.Limiter)
	}
	l, _ := s.limiters.LoadOrStore(client, rate.NewLimiter(rate.Limit(s.cfg.SubjectRate), max(1, int(s.cfg.SubjectRate))))
	return l.(*rate.Limiter)
}
