package receiver

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// SubjectMode says where the receiver expects the SET's subject.
type SubjectMode string

const (
	// SubjectSubID is SSF 1.0: a top-level sub_id is required and sub and
	// exp must not appear.
	SubjectSubID SubjectMode = "sub_id"
	// SubjectInEvent is the RISC and GOV.UK form: a "subject" object inside
	// an event of the events claim.
	SubjectInEvent SubjectMode = "in_event"
	// SubjectEither accepts either placement (or both); a SET with only
	// the in-event subject gets warning "sub_id_absent".
	SubjectEither SubjectMode = "either"
)

// DefaultAlgorithms are the signature algorithms accepted when
// Config.Algorithms is empty: those SSF receivers commonly allow. "none" and
// HMAC algorithms are never accepted, whatever the configuration.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}

// Config configures a Receiver. Zero values take the defaults documented on
// each field. The fault-injection fields are all off at their zero value.
type Config struct {
	// ClientID and ClientSecret are the OAuth client credentials the token
	// endpoint accepts. Both are required unless NoAuth is set.
	ClientID     string
	ClientSecret string
	// Scopes are the scopes a client may ask for (GOV.UK: "messages/write").
	// A request naming another scope gets invalid_scope. A request naming none
	// is granted all of them. Empty means the scope parameter is ignored.
	Scopes []string
	// TokenLifetime is how long an issued token is valid; default 1h. Within
	// it the token endpoint answers with the same token, as GOV.UK's does.
	TokenLifetime time.Duration
	// NoAuth turns off the bearer-token check on /events, for transmitters
	// configured without a token endpoint.
	NoAuth bool

	// Issuer is the iss every SET must carry. Required.
	Issuer string
	// Audience is the value aud must equal or, if aud is an array, contain.
	// Required.
	Audience string

	// Exactly one source of verification keys must be set.
	//
	// JWKSFile is a JWKS (or a single JWK) in a file.
	JWKSFile string
	// JWKSURL is fetched on first use and re-fetched every JWKSRefresh, or
	// sooner (at most every 10 s) when a SET names an unknown kid, so key
	// rotation works without a restart. setrelay serves its own at /jwks.json.
	JWKSURL string
	// PEMFile holds one or more PEM public keys or certificates. PEM keys have
	// no kid, so a SET's kid is not required to match them.
	PEMFile string
	// Keys is an in-memory key set, for tests and the in-process demo.
	Keys *jose.JSONWebKeySet
	// JWKSTimeout bounds one JWKS fetch; default 5s.
	JWKSTimeout time.Duration
	// JWKSRefresh is how long a fetched JWKS is used; default 5m.
	JWKSRefresh time.Duration
	// HTTPClient fetches JWKSURL; default a client with JWKSTimeout.
	HTTPClient *http.Client

	// Algorithms is the JWS alg allow-list; default DefaultAlgorithms.
	Algorithms []jose.SignatureAlgorithm
	// SubjectMode is where the subject must be; default SubjectEither.
	// SubjectSubID is the SSF 1.0 profile; the others relax SSF 1.0 §3.1
	// for receivers that read the subject inside the event.
	SubjectMode SubjectMode
	// ClockSkew is how far in the future iat may be; default 60s.
	ClockSkew time.Duration
	// Strict turns every warning (a broken SHOULD, an event that does not
	// match its CAEP/RISC/SSF definition) into a rejection, 400
	// invalid_request, for those who want to fail fast.
	Strict bool
	// SubjectFormats are proprietary subject identifier formats agreed with
	// the transmitter (SSF 1.0 §3.4). A subject in another format that is
	// neither registered by RFC 9493 nor defined by SSF 1.0 is rejected.
	SubjectFormats []string
	// MaxBodyBytes bounds a request body; default 64 KiB.
	MaxBodyBytes int64
	// MaxRecords bounds how many accepted SETs are kept for duplicate
	// detection and for Accepted; default 100000. The oldest go first.
	MaxRecords int
	// AllowFrom, when not empty, is the source-address allow-list (GOV.UK
	// allow-lists its transmitters' addresses). Others get 403 access_denied.
	AllowFrom []netip.Prefix
	// Quiet turns off the log line per SET.
	Quiet bool
	// Now is the clock; default time.Now. Token expiry, outages and iat
	// checks use it; injected latency and hangs use real timers.
	Now func() time.Time

	// Seed seeds the fault generator; equal seeds give equal fault sequences.
	Seed uint64
	// FailRate is the probability, 0..1, of answering 500.
	FailRate float64
	// Rate429 is the probability, 0..1, of answering 429 with RetryAfter.
	Rate429 float64
	// RetryAfter is the Retry-After sent with injected 429s; default 1s.
	RetryAfter time.Duration
	// Latency is added to every /events request.
	Latency time.Duration
	// HangRate is the probability, 0..1, of holding a request until the
	// client gives up or MaxHang passes (then 503).
	HangRate float64
	// MaxHang bounds a hang; default 30s.
	MaxHang time.Duration
	// RevokeTokenEvery revokes the current token after every N unique
	// accepted SETs, so the next push is answered 401; 0 is off.
	RevokeTokenEvery int
	// RejectTxnPrefix: valid SETs whose txn starts with it are answered 400
	// invalid_request; empty is off.
	RejectTxnPrefix string
	// DownAfter and DownFor make the receiver answer 503 to every request
	// from DownAfter after New until DownAfter+DownFor; DownFor 0 is off.
	DownAfter time.Duration
	DownFor   time.Duration
}

func (c *Config) setDefaults() {
	if c.TokenLifetime == 0 {
		c.TokenLifetime = time.Hour
	}
	if c.JWKSTimeout == 0 {
		c.JWKSTimeout = 5 * time.Second
	}
	if c.JWKSRefresh == 0 {
		c.JWKSRefresh = 5 * time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.JWKSTimeout}
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = DefaultAlgorithms
	}
	if c.SubjectMode == "" {
		c.SubjectMode = SubjectEither
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = time.Minute
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 64 << 10
	}
	if c.MaxRecords == 0 {
		c.MaxRecords = 100000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.MaxHang == 0 {
		c.MaxHang = 30 * time.Second
	}
}

func (c *Config) validate() error {
	var errs []error
	if !c.NoAuth && (c.ClientID == "" || c.ClientSecret == "") {
		errs = append(errs, errors.New("--client-id and --client-secret are required, or --no-auth to accept pushes without a bearer token (Config.ClientID, ClientSecret, NoAuth)"))
	}
	if c.Issuer == "" {
		errs = append(errs, errors.New("--issuer is required: the iss every SET must carry (Config.Issuer)"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("--audience is required: the aud every SET must carry or contain (Config.Audience)"))
	}
	n := 0
	for _, set := range []bool{c.JWKSFile != "", c.JWKSURL != "", c.PEMFile != "", c.Keys != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs = append(errs, fmt.Errorf("give exactly one source of verification keys: --jwks-file, --jwks-url or --pem (Config.JWKSFile, JWKSURL, PEMFile or Keys); got %d", n))
	}
	for _, a := range c.Algorithms {
		switch a {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
			jose.ES256, jose.ES384, jose.ES512, jose.EdDSA:
		default:
			errs = append(errs, fmt.Errorf("algorithm %q is not an asymmetric signature algorithm", a))
		}
	}
	switch c.SubjectMode {
	case SubjectSubID, SubjectInEvent, SubjectEither:
	default:
		errs = append(errs, fmt.Errorf("subject mode %q: want %q, %q or %q", c.SubjectMode, SubjectSubID, SubjectInEvent, SubjectEither))
	}
	for name, p := range map[string]float64{"fail rate": c.FailRate, "429 rate": c.Rate429, "hang rate": c.HangRate} {
		if p < 0 || p > 1 {
			errs = append(errs, fmt.Errorf("%s %v is not within 0..1", name, p))
		}
	}
	if c.TokenLifetime < 0 || c.ClockSkew < 0 || c.Latency < 0 || c.MaxHang < 0 || c.RetryAfter < 0 || c.DownAfter < 0 || c.DownFor < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	if c.RevokeTokenEvery < 0 || c.MaxRecords < 0 || c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("counts and sizes must not be negative"))
	}
	return errors.Join(errs...)
}
