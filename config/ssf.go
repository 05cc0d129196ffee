package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// DefaultSSFListen is the SSF listener's address when ssf.listen is not set.
const DefaultSSFListen = "0.0.0.0:8443"

// SSF configures the SSF 1.0 transmitter API (package ssf): discovery, the
// stream management API and poll delivery, on a public listener of its
// own. Off by default: a configuration without it behaves as before.
type SSF struct {
	// Enabled turns the API on.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Listen is the listener's host:port (default 0.0.0.0:8443).
	Listen string `yaml:"listen" json:"listen"`
	// TLS serves HTTPS with this certificate and key. Without it the
	// listener speaks plain HTTP and must sit behind a TLS-terminating
	// proxy: base_url is https either way.
	TLS ServerTLS `yaml:"tls" json:"tls"`
	// BaseURL is the public https URL of the listener, from which the
	// endpoints in the metadata are built. Default: the issuer's origin.
	BaseURL string `yaml:"base_url" json:"base_url"`
	// JWKSURI is the jwks_uri in the metadata. Default: base_url + /jwks.json,
	// which this listener serves.
	JWKSURI string `yaml:"jwks_uri" json:"jwks_uri"`
	// Key is the id of the key (keys[].id) that signs the streams' SETs.
	// Default: the first key.
	Key string `yaml:"key" json:"key"`
	// DefaultSubjects is ALL or NONE (default ALL).
	DefaultSubjects string `yaml:"default_subjects" json:"default_subjects"`
	// CriticalSubjectMembers are advertised as critical_subject_members:
	// complex subject member names receivers must interpret (SSF 1.0 §6.1).
	CriticalSubjectMembers []string `yaml:"critical_subject_members" json:"critical_subject_members"`
	// EventsSupported are the event types streams may request, as aliases
	// or URIs. Default: every CAEP and RISC type.
	EventsSupported []string `yaml:"events_supported" json:"events_supported"`
	// MinVerificationInterval is the least time between verification
	// requests of one stream (default 30s).
	MinVerificationInterval time.Duration `yaml:"min_verification_interval" json:"min_verification_interval"`
	// MaxStreamsPerClient bounds one client's streams (default 10).
	MaxStreamsPerClient int `yaml:"max_streams_per_client" json:"max_streams_per_client"`
	// PollAckWait is how long a polled SET waits for its ack before it is
	// offered again (default 30s).
	PollAckWait time.Duration `yaml:"poll_ack_wait" json:"poll_ack_wait"`
	// MaxPollWait bounds a long poll (default 20s).
	MaxPollWait time.Duration `yaml:"max_poll_wait" json:"max_poll_wait"`
	// InactivityTimeout pauses a stream whose receiver made no request
	// about it for this long, with a Stream Updated event. 0: never.
	InactivityTimeout time.Duration `yaml:"inactivity_timeout" json:"inactivity_timeout"`
	// SubjectRate is add/remove subject requests per second per client
	// and process (default 100).
	SubjectRate float64 `yaml:"subject_rate" json:"subject_rate"`
	// PushConcurrency is the pushes in flight per push stream and process
	// (default 1, which keeps stored order; more is faster but may reorder
	// events about one subject).
	PushConcurrency int `yaml:"push_concurrency" json:"push_concurrency"`
	// AllowPrivateEndpoints lets receivers give push endpoints on
	// loopback, private or link-local addresses (refused by default).
	AllowPrivateEndpoints bool `yaml:"allow_private_endpoints" json:"allow_private_endpoints"`
	// Clients are the receivers allowed to use the API with static tokens.
	Clients []SSFClient `yaml:"clients" json:"clients"`
	// JWT accepts JWT access tokens from an authorization server.
	JWT *SSFJWT `yaml:"jwt" json:"jwt"`
}

// ServerTLS names a server certificate and key (PEM).
type ServerTLS struct {
	Cert string `yaml:"cert" json:"cert"`
	Key  string `yaml:"key" json:"key"`
}

// SSFClient is one receiver with a static bearer token, stored only as
// its SHA-256 (printf %s "$TOKEN" | sha256sum).
type SSFClient struct {
	ID          string   `yaml:"id" json:"id"`
	TokenSHA256 string   `yaml:"token_sha256" json:"token_sha256"`
	Audience    Audience `yaml:"audience" json:"audience"`
	// Scopes: ssf.read, ssf.manage, ssf.poll. Empty grants all three.
	Scopes []string `yaml:"scopes" json:"scopes"`
}

// SSFJWT accepts RFC 9068 JWT access tokens.
type SSFJWT struct {
	Issuer   string `yaml:"issuer" json:"issuer"`
	JWKSURI  string `yaml:"jwks_uri" json:"jwks_uri"`
	Audience string `yaml:"audience" json:"audience"`
	Scope    string `yaml:"scope" json:"scope"`
	// ClientAudience maps a client_id to its streams' aud (default: the
	// client_id).
	ClientAudience map[string]Audience `yaml:"client_audience" json:"client_audience"`
}

func (c *Config) fillSSFDefaults() {
	if c.SSF.Listen == "" {
		c.SSF.Listen = DefaultSSFListen
	}
}

// streamReceiverName is the name a receiver-managed stream has as a
// receiver (ssf.ReceiverName): a configured receiver may not take one, or
// the two would share a consumer.
var streamReceiverName = regexp.MustCompile(`^ssf-[0-9a-f]{32}$`)

func (c *Config) validateSSF(p *problems, keyIDs map[string]bool) {
	for i, r := range c.Receivers {
		if streamReceiverName.MatchString(r.Name) {
			p.add(fmt.Sprintf("receivers[%d].name", i), "%q is the form of an SSF stream's name (ssf-<stream id>); choose another", r.Name)
		}
	}
	s := &c.SSF
	if !s.Enabled {
		return
	}
	checkHostPort(p, "ssf.listen", s.Listen)
	if (s.TLS.Cert == "") != (s.TLS.Key == "") {
		p.add("ssf.tls", "cert and key go together: set both to serve HTTPS, or neither behind a TLS-terminating proxy")
	}
	if s.BaseURL != "" {
		if u, err := url.Parse(s.BaseURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			p.add("ssf.base_url", "must be the https URL receivers reach this listener at, without query or fragment (got %q)", s.BaseURL)
		}
	}
	if s.InactivityTimeout < 0 || (s.InactivityTimeout > 0 && s.InactivityTimeout < time.Second) {
		p.add("ssf.inactivity_timeout", "must be 0 (never) or at least 1s (got %s)", s.InactivityTimeout)
	}
	if s.JWKSURI != "" {
		checkURL(p, "ssf.jwks_uri", s.JWKSURI, false, "the public JWKS URL")
	}
	if s.Key != "" && !keyIDs[s.Key] {
		p.add("ssf.key", "no key with id %q in keys", s.Key)
	}
	if s.DefaultSubjects != "" && s.DefaultSubjects != ssf.DefaultSubjectsAll && s.DefaultSubjects != ssf.DefaultSubjectsNone {
		p.add("ssf.default_subjects", "must be ALL or NONE (got %q)", s.DefaultSubjects)
	}
	seenCritical := map[string]bool{}
	for i, n := range s.CriticalSubjectMembers {
		if n == "" || n == "format" || seenCritical[n] {
			p.add(fmt.Sprintf("ssf.critical_subject_members[%d]", i), "must be a complex subject member name (such as user, device, session, application, tenant, org_unit, group), each once (got %q)", n)
		}
		seenCritical[n] = true
	}
	for i, e := range s.EventsSupported {
		if uri, _ := resolveKnown(e); uri == "" {
			p.add(fmt.Sprintf("ssf.events_supported[%d]", i), "%q is not a known event type alias or URI", e)
		}
	}
	if len(s.Clients) == 0 && s.JWT == nil {
		p.add("ssf.clients", "no receiver could use the API: add clients (static tokens) or jwt")
	}
	seen := map[string]bool{}
	for i, cl := range s.Clients {
		path := fmt.Sprintf("ssf.clients[%d]", i)
		if cl.ID == "" {
			p.add(path+".id", "required")
		} else if seen[cl.ID] {
			p.add(path+".id", "duplicate client id %q", cl.ID)
		}
		seen[cl.ID] = true
		if b, err := hex.DecodeString(cl.TokenSHA256); err != nil || len(b) != sha256.Size {
			p.add(path+".token_sha256", "must be the token's SHA-256 as 64 hex digits (printf %%s \"$TOKEN\" | sha256sum); the token itself is never stored")
		}
		if len(cl.Audience) == 0 {
			p.add(path+".audience", "required: the aud of this client's streams")
		}
		for j, sc := range cl.Scopes {
			if sc != ssf.ScopeRead && sc != ssf.ScopeManage && sc != ssf.ScopePoll {
				p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "must be %s, %s or %s (got %q)", ssf.ScopeRead, ssf.ScopeManage, ssf.ScopePoll, sc)
			}
		}
	}
	if j := s.JWT; j != nil {
		checkURL(p, "ssf.jwt.jwks_uri", j.JWKSURI, false, "the authorization server's JWKS URL")
		if j.Issuer == "" {
			p.add("ssf.jwt.issuer", "required: the authorization server's issuer (the tokens' iss)")
		}
		if j.Audience == "" {
			p.add("ssf.jwt.audience", "required: the aud the tokens must carry for this transmitter")
		}
	}
}

// Transmitter is the ssf package's configuration.
func (c *Config) Transmitter() ssf.Config {
	s := c.SSF
	out := ssf.Config{
		Issuer:                  c.Issuer,
		BaseURL:                 s.BaseURL,
		JWKSURI:                 s.JWKSURI,
		DefaultSubjects:         s.DefaultSubjects,
		CriticalSubjectMembers:  s.CriticalSubjectMembers,
		MinVerificationInterval: s.MinVerificationInterval,
		MaxStreamsPerClient:     s.MaxStreamsPerClient,
		PollAckWait:             s.PollAckWait,
		MaxPollWait:             s.MaxPollWait,
		SubjectRate:             s.SubjectRate,
		InactivityTimeout:       s.InactivityTimeout,
		AllowPrivateEndpoints:   s.AllowPrivateEndpoints,
		PushConcurrency:         s.PushConcurrency,
		Queue:                   c.Queue(),
		KeyID:                   c.TransmitterKey(),
	}
	for _, e := range s.EventsSupported {
		if uri, _ := resolveKnown(e); uri != "" {
			out.EventsSupported = append(out.EventsSupported, uri)
		}
	}
	for _, cl := range s.Clients {
		out.Clients = append(out.Clients, ssf.Client{ID: cl.ID, TokenSHA256: cl.TokenSHA256, Audience: cl.Audience, Scopes: cl.Scopes})
	}
	if j := s.JWT; j != nil {
		ja := &ssf.JWTAuth{Issuer: j.Issuer, JWKSURI: j.JWKSURI, Audience: j.Audience, Scope: j.Scope, ClientAudience: map[string][]string{}}
		for k, v := range j.ClientAudience {
			ja.ClientAudience[k] = v
		}
		out.JWT = ja
	}
	return out
}

// TransmitterKey is the id of the key that signs the streams' SETs.
func (c *Config) TransmitterKey() string {
	if c.SSF.Key != "" || len(c.Keys) == 0 {
		return c.SSF.Key
	}
	return c.Keys[0].ID
}

// resolveKnown resolves an alias or URI of a type setrelay knows, "" for
// anything else (a stream can only be offered types setrelay builds).
func resolveKnown(name string) (string, bool) {
	uri, known := intent.ResolveType(name)
	if !known {
		return "", false
	}
	return uri, true
}
