package ssf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
)

// Delivery methods (SSF 1.0 §8.1.1).
const (
	MethodPush = "urn:ietf:rfc:8935"
	MethodPoll = "urn:ietf:rfc:8936"
)

// Default subjects (SSF 1.0 §6.1 default_subjects).
const (
	DefaultSubjectsAll  = "ALL"
	DefaultSubjectsNone = "NONE"
)

// Scopes a client's credential must carry for each group of endpoints.
// A valid credential without the scope gets 403.
const (
	ScopeRead   = "ssf.read"   // GET configuration and status
	ScopeManage = "ssf.manage" // create, update, replace, delete, status, subjects, verification
	ScopePoll   = "ssf.poll"   // the poll endpoint
)

// Defaults.
const (
	DefaultMinVerificationInterval = 30 * time.Second
	DefaultPollAckWait             = 30 * time.Second
	DefaultMaxPollWait             = 20 * time.Second
	DefaultMaxEvents               = 100
	MaxMaxEvents                   = 1000
	DefaultMaxStreamsPerClient     = 10
	DefaultSubjectRate             = 100
	// DefaultPushConcurrency is 1 so a push stream delivers in stored
	// order, as §8.1.2 requires of held events for one subject: its
	// consumer then has one SET unacknowledged at a time, fleet-wide, so
	// a retry cannot be overtaken either. More pushes in flight are
	// faster but may reorder.
	DefaultPushConcurrency = 1
)

// Config is the transmitter's configuration.
type Config struct {
	// Issuer is the transmitter's issuer: the "iss" of every SET and the
	// metadata's issuer. Its path, if any, selects the §6.2 well-known URL.
	Issuer string
	// BaseURL is the public https URL of the SSF listener; the endpoints
	// in the metadata are built from it. Empty means the issuer's origin.
	BaseURL string
	// JWKSURI is where receivers fetch the signing keys.
	JWKSURI string
	// Clients are the receivers allowed to use the management API.
	Clients []Client
	// JWT, when set, also accepts JWT access tokens from an authorization server.
	JWT *JWTAuth
	// DefaultSubjects is ALL (events for every subject unless removed)
	// or NONE (only for added subjects).
	DefaultSubjects string
	// CriticalSubjectMembers are the complex subject member names a
	// receiver must be able to interpret, or discard the event (SSF 1.0
	// §3.3, §6.1 critical_subject_members). Advertised in the metadata;
	// empty leaves the member out.
	CriticalSubjectMembers []string
	// EventsSupported are the event-type URIs offered to streams. Empty
	// means every CAEP, RISC and SSF type setrelay knows.
	EventsSupported []string
	// MinVerificationInterval is the least time between two verification
	// requests of one stream; faster requests get 429.
	MinVerificationInterval time.Duration
	// MaxStreamsPerClient bounds the streams one client may create; beyond
	// it, create answers 409 as §8.1.1.1 says for transmitters that do not
	// support more streams.
	MaxStreamsPerClient int
	// PollAckWait is how long a polled SET waits for its ack before it is
	// offered again.
	PollAckWait time.Duration
	// MaxPollWait bounds one long poll.
	MaxPollWait time.Duration
	// Queue is the queue configuration used for the streams' consumers
	// and buckets (replicas, ack wait, max ack pending).
	Queue queue.Config
	// PushTLS and PushInsecureHTTP configure the push clients of push
	// streams. InsecureHTTP allows http:// endpoint_url values (tests only).
	PushTLS          push.TLSConfig
	PushInsecureHTTP bool
	// AllowPrivateEndpoints lets receivers push to loopback, private and
	// link-local addresses (tests, or a transmitter inside one network
	// with its receivers). Off, such endpoint_url values get 400.
	AllowPrivateEndpoints bool
	// PushConcurrency is the pushes in flight at once per push stream in
	// this process (default 1: stored order across the fleet, retries
	// included; more is faster but pushes concurrently, so events about
	// one subject may arrive out of order).
	PushConcurrency int
	// InactivityTimeout, when set, pauses an enabled stream whose receiver
	// has made no authenticated request about it (API call or poll) for
	// this long, with a Stream Updated event (§8.1.1, §8.1.5). Zero: never.
	InactivityTimeout time.Duration
	// SubjectRate is the add/remove subject requests per second one client
	// may make (per process); faster ones get 429.
	SubjectRate float64
	// KeyID is the signing key of the streams' SETs, and SendKID says
	// whether its kid goes in the JOSE header.
	KeyID string
}

// Client is one receiver allowed to manage streams, authenticated by a
// static bearer token stored only as its SHA-256.
type Client struct {
	// ID names the client; it owns the streams it creates.
	ID string
	// TokenSHA256 is the hex SHA-256 of the client's bearer token.
	TokenSHA256 string
	// Audience is the "aud" of the client's streams.
	Audience []string
	// Scopes the token grants; empty grants all three.
	Scopes []string
}

// JWTAuth accepts RFC 9068 JWT access tokens from one authorization server.
type JWTAuth struct {
	Issuer   string
	JWKSURI  string
	Audience string
	// Scope is an extra scope every token must carry, besides the
	// per-endpoint scopes; empty for none.
	Scope string
	// ClientAudience maps a client_id to the aud of its streams; a client
	// not listed gets its client_id as aud.
	ClientAudience map[string][]string
}

// HashToken is the hex SHA-256 of a bearer token, as stored in Client.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.DefaultSubjects == "" {
		out.DefaultSubjects = DefaultSubjectsAll
	}
	if out.MinVerificationInterval == 0 {
		out.MinVerificationInterval = DefaultMinVerificationInterval
	}
	if out.PollAckWait <= 0 {
		out.PollAckWait = DefaultPollAckWait
	}
	if out.MaxPollWait <= 0 {
		out.MaxPollWait = DefaultMaxPollWait
	}
	if out.MaxStreamsPerClient == 0 {
		out.MaxStreamsPerClient = DefaultMaxStreamsPerClient
	}
	if out.SubjectRate <= 0 {
		out.SubjectRate = DefaultSubjectRate
	}
	if out.PushConcurrency <= 0 {
		out.PushConcurrency = DefaultPushConcurrency
	}
	if out.BaseURL == "" {
		if u, err := url.Parse(out.Issuer); err == nil {
			out.BaseURL = u.Scheme + "://" + u.Host
		}
	}
	out.BaseURL = strings.TrimRight(out.BaseURL, "/")
	if out.JWKSURI == "" {
		out.JWKSURI = out.BaseURL + JWKSPath
	}
	if len(out.EventsSupported) == 0 {
		out.EventsSupported = knownEventTypes()
	}
	return out
}

// Validate reports every problem with c.
func (c *Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		errs = append(errs, fmt.Errorf("issuer %q must be an https URL without query or fragment (SSF 1.0 §6.1)", c.Issuer))
	}
	if c.DefaultSubjects != "" && c.DefaultSubjects != DefaultSubjectsAll && c.DefaultSubjects != DefaultSubjectsNone {
		errs = append(errs, fmt.Errorf("default_subjects must be ALL or NONE (got %q)", c.DefaultSubjects))
	}
	if err := checkCriticalMembers(c.CriticalSubjectMembers); err != nil {
		errs = append(errs, err)
	}
	if len(c.Clients) == 0 && c.JWT == nil {
		errs = append(errs, errors.New("no clients and no jwt authorization server: no receiver could use the API"))
	}
	seen := map[string]bool{}
	for i, cl := range c.Clients {
		if cl.ID == "" {
			errs = append(errs, fmt.Errorf("clients[%d]: id is required", i))
		}
		if seen[cl.ID] {
			errs = append(errs, fmt.Errorf("clients[%d]: duplicate id %q", i, cl.ID))
		}
		seen[cl.ID] = true
		if b, err := hex.DecodeString(cl.TokenSHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("clients[%d] %q: token_sha256 must be 64 hex digits (make it with: printf %%s \"$TOKEN\" | sha256sum)", i, cl.ID))
		}
		if len(cl.Audience) == 0 {
			errs = append(errs, fmt.Errorf("clients[%d] %q: audience is required (the aud of its streams' SETs)", i, cl.ID))
		}
	}
	if j := c.JWT; j != nil && (j.Issuer == "" || j.JWKSURI == "" || j.Audience == "") {
		errs = append(errs, errors.New("jwt: issuer, jwks_uri and audience are all required"))
	}
	return errors.Join(errs...)
}

// checkCriticalMembers refuses critical_subject_members that no complex
// subject could have: empty, "format", or repeated names.
func checkCriticalMembers(names []string) error {
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case n == "" || n == "format":
			return fmt.Errorf("critical_subject_members: %q is not a complex subject member name (such as user, device, session, application, tenant, org_unit, group)", n)
		case seen[n]:
			return fmt.Errorf("critical_subject_members: %q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}
