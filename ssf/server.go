package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// MaxBody bounds a request body of the management API and the poll endpoint.
const MaxBody = 256 << 10

// Signer signs SET claims; *signer.Signer satisfies it.
type Signer interface {
	Sign(payload []byte, withKID bool) (string, error)
}

// Deps are the parts the Server runs on.
type Deps struct {
	NC         *nats.Conn
	JS         jetstream.JetStream
	Signer     Signer
	SendKID    bool
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// JWKS, when set, is served at /jwks.json on the API's listener, the
	// default jwks_uri: the ops listener is loopback-only, and receivers
	// need the keys from where they discover the transmitter.
	JWKS *jose.JSONWebKeySet
}

// Server serves the transmitter's HTTP API. Several Servers (in several
// processes) may share one JetStream: all state is in the buckets and
// consumers.
type Server struct {
	cfg      Config
	nc       *nats.Conn
	js       jetstream.JetStream
	signer   Signer
	sendKID  bool
	log      *zap.Logger
	now      func() time.Time
	auth     []authenticator
	streams  *registry
	subjects *subjectStore
	poll     jetstream.KeyValue
	m        *metrics
	mux      *http.ServeMux
	// consumers caches consumer handles by stream id; a handle only names
	// the consumer, so it stays valid when a disabled stream's consumer is
	// created again.
	consumers sync.Map
	limiters  sync.Map // client id -> *rate.Limiter of subject changes
	// replayKeys checks dead-letter replays reaching poll streams.
	replayKeys *queue.ReplayKeys
	jwks       []byte
}

// New validates cfg, opens the buckets and builds the Server.
func New(ctx context.Context, cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ssf: %w", err)
	}
	if d.JS == nil || d.NC == nil || d.Signer == nil {
		return nil, errors.New("ssf: Deps.NC, Deps.JS and Deps.Signer are required")
	}
	s := &Server{cfg: cfg.withDefaults(), nc: d.NC, js: d.JS, signer: d.Signer, sendKID: d.SendKID, log: d.Log, now: d.Now}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.now == nil {
		s.now = time.Now
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	if len(cfg.Clients) > 0 {
		s.auth = append(s.auth, newStaticTokens(cfg.Clients))
	}
	if cfg.JWT != nil {
		ja, err := newJWTAuth(ctx, *cfg.JWT)
		if err != nil {
			return nil, err
		}
		s.auth = append(s.auth, ja)
	}
	streams, subjects, poll, err := openBuckets(ctx, d.JS, s.cfg.Queue.Replicas, 4*s.cfg.PollAckWait+time.Hour)
	if err != nil {
		return nil, err
	}
	s.streams = &registry{kv: streams}
	s.subjects = newSubjectStore(d.JS, subjects)
	s.subjects.tooWide = s.m.tooWide.Inc
	s.replayKeys = queue.NewReplayKeys(d.JS)
	s.poll = poll
	if d.JWKS != nil {
		for _, k := range d.JWKS.Keys {
			if !k.IsPublic() {
				return nil, errors.New("ssf: Deps.JWKS holds a private key; pass the public keys only")
			}
		}
		if s.jwks, err = json.Marshal(d.JWKS); err != nil {
			return nil, fmt.Errorf("ssf: JWKS: %w", err)
		}
	}
	s.routes()
	return s, nil
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Config is the Server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

func (s *Server) routes() {
	mux := http.NewServeMux()
	mux.HandleFunc(WellKnownPath, s.handleMetadata)
	if p := wellKnownPath(s.cfg.Issuer); p != WellKnownPath {
		mux.HandleFunc(p, s.handleMetadata)
	}
	if s.jwks != nil {
		mux.HandleFunc(JWKSPath, func(w http.ResponseWriter, r *http.Request) {
			if !allowed(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(s.jwks)
		})
	}
	mux.HandleFunc(StreamsPath, s.authed(s.handleStreams))
	mux.HandleFunc(StatusPath, s.authed(s.handleStatus))
	mux.HandleFunc(AddSubjectPath, s.authed(s.handleAddSubject))
	mux.HandleFunc(RemoveSubjectPath, s.authed(s.handleRemoveSubject))
	mux.HandleFunc(VerifyPath, s.authed(s.handleVerify))
	mux.HandleFunc(PollPathPrefix+"{stream_id}", s.authed(s.handlePoll))
	s.mux = mux
}

// authed answers 401 with a WWW-Authenticate challenge (RFC 6750) unless
// the request carries a token a client holds.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *Principal)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			if errors.Is(err, errUnauthenticated) {
				s.m.authFailures.Inc()
				// RFC 6750 §3.1: a request with no credential at all (or
				// another scheme) gets the bare challenge; only a token
				// that was sent and refused is called invalid_token.
				challenge := `Bearer realm="ssf", error="invalid_token"`
				if errors.Is(err, errNoCredentials) {
					challenge = `Bearer realm="ssf"`
				}
				w.Header().Set("WWW-Authenticate", challenge)
				writeError(w, http.StatusUnauthorized, "invalid_token", "a valid bearer token is required (Authorization: Bearer <token>)")
				return
			}
			s.log.Warn("cannot check a bearer token", zap.Error(err))
			writeError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "the token cannot be checked now; try again")
			return
		}
		h(w, r, p)
	}
}

// need answers 403 unless p holds scope.
func need(w http.ResponseWriter, p *Principal, scope string) bool {
	if p.Can(scope) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="ssf", error="insufficient_scope", scope="`+scope+`"`)
	writeError(w, http.StatusForbidden, "insufficient_scope", "this token lacks the "+scope+" scope")
	return false
}

// decodeBody reads a JSON object body into v, strictly.
func decodeBody(r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, code: "invalid_request", msg: "send Content-Type: application/json"}
		}
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		return badRequest("cannot read the request body")
	}
	if len(b) > MaxBody {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", msg: fmt.Sprintf("the body is larger than %d bytes", MaxBody)}
	}
	if err := json.Unmarshal(b, v); err != nil {
		return badRequest("the body is not the JSON object this endpoint takes: %v", err)
	}
	return nil
}

// errorBody is the JSON of every error answer: RFC 8935's shape, which
// receivers already parse.
type errorBody struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Err: code, Description: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail writes err: an *apiError as itself, errNotFound as 404, anything
// else as a logged 500 that does not leak internals.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		writeError(w, ae.status, ae.code, ae.msg)
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "not_found", "there is no stream with that stream_id for this client")
	default:
		s.log.Error("ssf request failed", zap.String("path", r.URL.Path), zap.String("method", r.Method), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "internal_error", "the transmitter could not complete the request; try again")
	}
}

// owned returns the stream id if it belongs to p, or errNotFound: another
// client's stream is indistinguishable from a missing one (§8.1.1.2: 404
// when there is no stream with that id for this receiver).
func (s *Server) owned(ctx context.Context, id string, p *Principal) (*Stream, uint64, error) {
	if !validStreamID(id) {
		return nil, 0, errNotFound
	}
	st, rev, err := s.streams.get(ctx, id)
	if err != nil {
		return nil, 0, err
	}
	if st.Owner != p.ClientID {
		return nil, 0, errNotFound
	}
	s.touch(ctx, st)
	return s.current(st), rev, nil
}

// profile is how st's SETs are built: SSF 1.0 throughout (sub_id at the
// top level, aud as the client's).
func (s *Server) profile(st *Stream) set.Profile {
	return set.Profile{Receiver: ReceiverName(st.ID), Issuer: s.cfg.Issuer, Audience: st.Audience, Placement: set.PlacementSubID}
}

func allowed(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", joinMethods(methods))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use "+joinMethods(methods))
	return false
}

func joinMethods(m []string) string {
	out := ""
	for i, x := range m {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// updateGauges sets the stream gauges from the registry and the streams'
// consumers; known holds the stream ids with a pending series, so the
// series of a deleted stream is removed.
func (s *Server) updateGauges(ctx context.Context, known map[string]bool) {
	all, err := s.streams.all(ctx)
	if err != nil {
		return
	}
	s.m.streams.Reset()
	seen := map[string]bool{}
	for _, st := range all {
		s.m.streams.WithLabelValues(st.Delivery.Method, st.Status).Inc()
		if st.Status == StatusDisabled {
			continue
		}
		cons, err := s.consumer(ctx, st.ID)
		if err != nil {
			continue
		}
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		s.m.pending.WithLabelValues(st.ID).Set(float64(info.NumPending + uint64(info.NumAckPending)))
		seen[st.ID] = true
	}
	for id := range known {
		if !seen[id] {
			s.m.pending.DeleteLabelValues(id)
			delete(known, id)
		}
	}
	for id := range seen {
		known[id] = true
	}
}
