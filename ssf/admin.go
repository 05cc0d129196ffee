package ssf

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Admin reads and changes the stream registry for operators (the
// `setrelay streams` commands), with no HTTP and no signing key. cfg
// supplies the queue settings a re-created consumer is given.
type Admin struct {
	s *Server
}

// NewAdmin opens the registry on js.
func NewAdmin(ctx context.Context, cfg Config, js jetstream.JetStream, log *zap.Logger) (*Admin, error) {
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{cfg: cfg.withDefaults(), js: js, log: log, now: time.Now}
	m, err := newMetrics(nil)
	if err != nil {
		return nil, err
	}
	s.m = m
	// Bind, never create: an operator's credentials may only read the
	// registry, and a missing bucket means no process ever enabled the API.
	streams, err := js.KeyValue(ctx, StreamsBucket)
	if err != nil {
		return nil, fmt.Errorf("ssf: bucket %s: %w (has a 'setrelay run' with ssf.enabled started on this NATS?)", StreamsBucket, err)
	}
	s.streams = &registry{kv: streams}
	// The subjects bucket is needed only to delete a stream's subjects.
	if subjects, err := js.KeyValue(ctx, SubjectsBucket); err == nil {
		s.subjects = newSubjectStore(js, subjects)
	}
	return &Admin{s: s}, nil
}

// List returns every stream, ordered by owner then id.
func (a *Admin) List(ctx context.Context) ([]*Stream, error) {
	all, err := a.s.streams.all(ctx)
	if err != nil {
		return nil, err
	}
	for _, st := range all {
		a.s.current(st)
	}
	slices.SortFunc(all, func(x, y *Stream) int {
		if c := strings.Compare(x.Owner, y.Owner); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	return all, nil
}

// Get returns one stream; ErrNotFound if there is none.
func (a *Admin) Get(ctx context.Context, id string) (*Stream, error) {
	if !validStreamID(id) {
		return nil, ErrNotFound
	}
	st, _, err := a.s.streams.get(ctx, id)
	if err == errNotFound {
		return nil, ErrNotFound
	}
	return a.s.current(st), err
}

// NotifyWait bounds how long SetStatus waits for the receiver to take the
// Stream Updated event before it pauses or disables a stream.
const NotifyWait = 30 * time.Second

// SetStatus sets a stream's status as the status endpoint does, for any
// owner. Since the receiver did not ask for it, the receiver is sent a
// Stream Updated event (§8.1.5) with the status and reason; see
// notifyStatus for when. wait bounds the wait for the receiver to take
// the event before a pause or disable (NotifyWait is a good value).
func (a *Admin) SetStatus(ctx context.Context, id, status, reason string, wait time.Duration) (*Stream, error) {
	cur, err := a.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if cur.Status == status && cur.Reason == reason {
		return cur, nil
	}
	if status != StatusEnabled {
		if err := a.s.notifyStatus(ctx, cur, status, reason, wait); err != nil {
			return nil, err
		}
	}
	st, err := a.s.SetStatus(ctx, id, "", status, reason)
	if err != nil {
		return nil, err
	}
	if status == StatusEnabled {
		if err := a.s.notifyStatus(ctx, st, status, reason, wait); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// Delete deletes a stream, its consumer and its subjects.
func (a *Admin) Delete(ctx context.Context, id string) error {
	err := a.s.DeleteStream(ctx, id, "")
	if err == errNotFound {
		return ErrNotFound
	}
	return err
}

// ErrNotFound: no stream has that id.
var ErrNotFound = errNotFound

// EndpointURL is where st's SETs go: the receiver's push URL, or this
// transmitter's poll URL for it.
func (a *Admin) EndpointURL(st *Stream) string { return a.s.endpointURL(st) }
