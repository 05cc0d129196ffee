package ssf

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/secret"
)

// Stream statuses (SSF 1.0 §8.1.2).
const (
	StatusEnabled  = "enabled"
	StatusPaused   = "paused"
	StatusDisabled = "disabled"
)

// Stream is one stream as stored in the registry: its configuration, who
// owns it and its status.
type Stream struct {
	ID              string    `json:"stream_id"`
	Owner           string    `json:"owner"`
	Audience        []string  `json:"aud"`
	EventsRequested []string  `json:"events_requested"`
	EventsDelivered []string  `json:"events_delivered"`
	Delivery        Delivery  `json:"delivery"`
	Description     string    `json:"description,omitempty"`
	Status          string    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	LastVerified    time.Time `json:"last_verification,omitzero"`
	Created         time.Time `json:"created"`
	Updated         time.Time `json:"updated"`
	// Generation counts changes of the consumer's life: it grows each time
	// the stream is disabled, so a dispatcher can tell a re-created
	// consumer from the one it was serving.
	Generation uint64 `json:"generation,omitempty"`
	// HasSubjects is set once a subject is added or removed; until then
	// the default_subjects rule decides without any look-up.
	HasSubjects bool `json:"has_subjects,omitempty"`
	// SubjectIndex is set with HasSubjects by this version and later:
	// every complex subject of the stream is in the match index. A stream
	// that had subjects before (HasSubjects without SubjectIndex) also
	// reads its older records the way they were written (subjectindex.go).
	SubjectIndex bool `json:"subject_index,omitempty"`
	// LastActivity is the receiver's last request about the stream, kept
	// to within a tenth of the inactivity timeout.
	LastActivity time.Time `json:"last_activity,omitzero"`
	// InactivityPause is set by the process that claimed the pause of an
	// inactive stream, so only one process sends the event and pauses.
	InactivityPause time.Time `json:"inactivity_pause,omitzero"`
	// Blocked is the worker's block reason while setrelay holds an enabled
	// push stream back for a delivery failure only a configuration change
	// fixes (blocked.go); the receiver sees it as paused.
	Blocked      string    `json:"blocked,omitempty"`
	BlockedSince time.Time `json:"blocked_since,omitzero"`
}

// Delivery is the stream's delivery method. AuthorizationHeader is a
// receiver's credential: it is stored (it must be sent with every push)
// but never returned by the API, written to logs or metrics.
type Delivery struct {
	Method              string       `json:"method"`
	EndpointURL         string       `json:"endpoint_url,omitempty"`
	AuthorizationHeader secret.Value `json:"-"`
}

// storedDelivery is Delivery as stored, header included.
type storedDelivery struct {
	Method              string `json:"method"`
	EndpointURL         string `json:"endpoint_url,omitempty"`
	AuthorizationHeader string `json:"authorization_header,omitempty"`
}

// MarshalJSON stores the header, which the API's own view omits.
func (d Delivery) MarshalJSON() ([]byte, error) {
	return json.Marshal(storedDelivery{d.Method, d.EndpointURL, d.AuthorizationHeader.Reveal()})
}

// UnmarshalJSON reads what MarshalJSON stored.
func (d *Delivery) UnmarshalJSON(b []byte) error {
	var s storedDelivery
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*d = Delivery{Method: s.Method, EndpointURL: s.EndpointURL, AuthorizationHeader: secret.Value(s.AuthorizationHeader)}
	return nil
}

// ReceiverName is the stream's name as a receiver of the worker and queue
// packages: it names its consumer (rcv_ssf-<id>), its dead letters and
// metrics, and seeds its SETs' jti.
func ReceiverName(streamID string) string { return "ssf-" + streamID }

// newStreamID returns 128 random bits in hex: unique, unguessable and made
// of RFC 3986 unreserved characters as §8.1.1 requires.
func newStreamID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// validStreamID reports whether id could be one of ours, before any lookup.
func validStreamID(id string) bool {
	if len(id) != 32 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

// wireStream is the stream configuration as the API shows it (§8.1.1).
type wireStream struct {
	StreamID                string       `json:"stream_id"`
	Iss                     string       `json:"iss"`
	Aud                     any          `json:"aud"`
	EventsSupported         []string     `json:"events_supported"`
	EventsRequested         []string     `json:"events_requested"`
	EventsDelivered         []string     `json:"events_delivered"`
	Delivery                wireDelivery `json:"delivery"`
	MinVerificationInterval int          `json:"min_verification_interval,omitempty"`
	Description             string       `json:"description,omitempty"`
	InactivityTimeout       int          `json:"inactivity_timeout,omitempty"`
}

type wireDelivery struct {
	Method      string `json:"method"`
	EndpointURL string `json:"endpoint_url,omitempty"`
}

// view is the API's view of st.
func (s *Server) view(st *Stream) wireStream {
	var aud any = st.Audience
	if len(st.Audience) == 1 {
		aud = st.Audience[0]
	}
	return wireStream{
		StreamID:                st.ID,
		Iss:                     s.cfg.Issuer,
		Aud:                     aud,
		EventsSupported:         s.cfg.EventsSupported,
		EventsRequested:         nonNil(st.EventsRequested),
		EventsDelivered:         nonNil(st.EventsDelivered),
		Delivery:                wireDelivery{Method: st.Delivery.Method, EndpointURL: s.endpointURL(st)},
		MinVerificationInterval: int(s.cfg.MinVerificationInterval / time.Second),
		Description:             st.Description,
		InactivityTimeout:       int(s.cfg.InactivityTimeout / time.Second),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// endpointURL is the push URL the receiver gave, or the poll URL this
// transmitter assigns.
func (s *Server) endpointURL(st *Stream) string {
	if st.Delivery.Method == MethodPoll {
		return s.cfg.BaseURL + PollPathPrefix + st.ID
	}
	return st.Delivery.EndpointURL
}

// request is a create, update or replace body. Pointers and RawMessage
// tell an absent member from an empty one; transmitter-supplied members
// are kept raw, since they are only compared.
type request struct {
	StreamID        *string          `json:"stream_id"`
	Iss             *string          `json:"iss"`
	Aud             json.RawMessage  `json:"aud"`
	EventsSupported *[]string        `json:"events_supported"`
	EventsRequested *[]string        `json:"events_requested"`
	EventsDelivered *[]string        `json:"events_delivered"`
	Delivery        *requestDelivery `json:"delivery"`
	MinVerification *int             `json:"min_verification_interval"`
	Description     *string          `json:"description"`
	Inactivity      *int             `json:"inactivity_timeout"`
}

type requestDelivery struct {
	Method              string  `json:"method"`
	EndpointURL         *string `json:"endpoint_url"`
	AuthorizationHeader *string `json:"authorization_header"`
}

// MaxDescription bounds a stream's description.
const MaxDescription = 1024

// apiError is a 4xx answer with an error code and a description that says
// what to change.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, a ...any) *apiError {
	return &apiError{status: 400, code: "invalid_request", msg: fmt.Sprintf(format, a...)}
}

// checkTransmitterFields enforces §8.1.1.3: a transmitter-supplied member
// in a request must equal the stream's current value, or the request is
// refused with 400.
func (s *Server) checkTransmitterFields(req *request, cur *Stream, p *Principal) *apiError {
	if req.Iss != nil && *req.Iss != s.cfg.Issuer {
		return badRequest("iss is supplied by the transmitter and is %q; leave it out", s.cfg.Issuer)
	}
	if len(req.Aud) > 0 {
		aud, err := parseAud(req.Aud)
		want := p.Audience
		if cur != nil {
			want = cur.Audience
		}
		if err != nil || !sameSet(aud, want) {
			return badRequest("aud is supplied by the transmitter and cannot be changed; leave it out")
		}
	}
	if req.EventsSupported != nil && !sameSet(*req.EventsSupported, s.cfg.EventsSupported) {
		return badRequest("events_supported is supplied by the transmitter; leave it out")
	}
	if req.EventsDelivered != nil {
		var want []string
		if cur != nil {
			want = s.deliveredEvents(cur.EventsRequested)
		}
		if !sameSet(*req.EventsDelivered, want) {
			return badRequest("events_delivered is supplied by the transmitter; leave it out and set events_requested")
		}
	}
	if req.MinVerification != nil && *req.MinVerification != int(s.cfg.MinVerificationInterval/time.Second) {
		return badRequest("min_verification_interval is supplied by the transmitter (%d); leave it out", int(s.cfg.MinVerificationInterval/time.Second))
	}
	if req.Inactivity != nil && *req.Inactivity != int(s.cfg.InactivityTimeout/time.Second) {
		return badRequest("inactivity_timeout is supplied by the transmitter (%d); leave it out", int(s.cfg.InactivityTimeout/time.Second))
	}
	return nil
}

func parseAud(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, err
	}
	return many, nil
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// deliveredEvents is events_delivered: the requested types this
// transmitter supports, in the transmitter's order. Unknown URIs are
// ignored, not errors (§8.1.1). Aliases are not URIs and match nothing.
func (s *Server) deliveredEvents(requested []string) []string {
	out := []string{}
	for _, t := range s.cfg.EventsSupported {
		if slices.Contains(requested, t) {
			out = append(out, t)
		}
	}
	return out
}

// current recomputes st's events_delivered from this process's
// events_supported, in place, and returns st. The stored value is what was
// computed when the receiver last set events_requested; the operator may
// have narrowed events_supported since, and events_delivered must stay
// within it (§8.1.1), both as shown and as filtered. Every stream read
// from the registry for a receiver or a dispatcher passes through here.
func (s *Server) current(st *Stream) *Stream {
	if st != nil {
		st.EventsDelivered = s.deliveredEvents(st.EventsRequested)
	}
	return st
}

// applyDelivery checks the requested delivery and sets st's. nil means
// poll (§8.1.1.1: a create without delivery is a poll stream). On an
// update of a push stream that leaves the endpoint as it is, a missing
// authorization_header keeps the stored one, since the API never shows it.
func (s *Server) applyDelivery(ctx context.Context, st *Stream, d *requestDelivery) *apiError {
	if d == nil {
		st.Delivery = Delivery{Method: MethodPoll}
		return nil
	}
	switch d.Method {
	case MethodPoll:
		if d.EndpointURL != nil && *d.EndpointURL != "" && (st.ID == "" || *d.EndpointURL != s.cfg.BaseURL+PollPathPrefix+st.ID) {
			return badRequest("a poll stream's endpoint_url is assigned by the transmitter; leave it out")
		}
		if d.AuthorizationHeader != nil {
			return badRequest("authorization_header applies to push delivery (%s) only", MethodPush)
		}
		st.Delivery = Delivery{Method: MethodPoll}
	case MethodPush:
		if d.EndpointURL == nil || *d.EndpointURL == "" {
			return badRequest("push delivery needs delivery.endpoint_url, the receiver's RFC 8935 endpoint")
		}
		u, err := url.Parse(*d.EndpointURL)
		if err != nil || u.Host == "" || u.Fragment != "" || u.User != nil || (u.Scheme != "https" && !(s.cfg.PushInsecureHTTP && u.Scheme == "http")) {
			return badRequest("delivery.endpoint_url must be an absolute https URL without fragment or credentials")
		}
		if !s.cfg.AllowPrivateEndpoints {
			if err := checkPublicHost(ctx, u.Hostname()); err != nil {
				return err
			}
		}
		hdr := secret.Value("")
		if d.AuthorizationHeader != nil {
			hdr = secret.Value(*d.AuthorizationHeader)
			if len(*d.AuthorizationHeader) > 4096 {
				return badRequest("delivery.authorization_header is longer than 4096 bytes")
			}
		} else if st.Delivery.Method == MethodPush && st.Delivery.EndpointURL == *d.EndpointURL {
			hdr = st.Delivery.AuthorizationHeader
		}
		st.Delivery = Delivery{Method: MethodPush, EndpointURL: *d.EndpointURL, AuthorizationHeader: hdr}
	case "":
		return badRequest("delivery.method is required: %s (push) or %s (poll)", MethodPush, MethodPoll)
	default:
		return badRequest("delivery.method %q is not supported; use %s (push) or %s (poll)", d.Method, MethodPush, MethodPoll)
	}
	return nil
}

// applyReceiverFields sets the receiver-supplied members present in req;
// with replace, absent ones are reset (PUT replaces the whole
// configuration).
func (s *Server) applyReceiverFields(ctx context.Context, st *Stream, req *request, replace bool) *apiError {
	if req.EventsRequested != nil {
		if len(*req.EventsRequested) > 256 {
			return badRequest("events_requested lists more than 256 types")
		}
		st.EventsRequested = slices.Clone(*req.EventsRequested)
	} else if replace {
		st.EventsRequested = nil
	}
	st.EventsDelivered = s.deliveredEvents(st.EventsRequested)
	if req.Description != nil {
		if len(*req.Description) > MaxDescription {
			return badRequest("description is longer than %d bytes", MaxDescription)
		}
		st.Description = *req.Description
	} else if replace {
		st.Description = ""
	}
	if req.Delivery != nil || replace {
		if err := s.applyDelivery(ctx, st, req.Delivery); err != nil {
			return err
		}
	}
	return nil
}

// wantsType reports whether st's receiver asked for events of the
// resolved type uri. Events about the stream itself (verification,
// stream-updated) are let through by ownStreamEvent instead.
func (st *Stream) wantsType(uri string) bool { return slices.Contains(st.EventsDelivered, uri) }

// checkPublicHost refuses a push endpoint on a loopback, private,
// link-local or otherwise internal address: a receiver chooses the URL, and
// must not be able to make the transmitter post to its own network (the
// metadata service, an admin port). The name is resolved now, so the
// receiver hears at once; a name that later resolves elsewhere (DNS
// rebinding) is caught by the push client, which checks the address of
// every connection it makes (push.Config.PublicOnly).
func checkPublicHost(ctx context.Context, host string) *apiError {
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupIPAddr(rctx, host)
		if err != nil || len(addrs) == 0 {
			return badRequest("delivery.endpoint_url: host %q does not resolve", host)
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		if !push.PublicIP(ip) {
			return badRequest("delivery.endpoint_url: %s is not a public address; this transmitter pushes only to public endpoints", host)
		}
	}
	return nil
}
