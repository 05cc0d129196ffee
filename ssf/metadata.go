package ssf

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/setrelay/setrelay/intent"
)

// Paths of the API on the SSF listener, below Config.BaseURL.
const (
	WellKnownPath     = "/.well-known/ssf-configuration"
	JWKSPath          = "/jwks.json"
	StreamsPath       = "/ssf/streams"
	StatusPath        = "/ssf/status"
	AddSubjectPath    = "/ssf/subjects:add"
	RemoveSubjectPath = "/ssf/subjects:remove"
	VerifyPath        = "/ssf/verify"
	PollPathPrefix    = "/ssf/poll/"
)

// Metadata is the Transmitter Configuration Metadata (SSF 1.0 §6.1).
type Metadata struct {
	SpecVersion              string       `json:"spec_version"`
	Issuer                   string       `json:"issuer"`
	JWKSURI                  string       `json:"jwks_uri,omitempty"`
	DeliveryMethodsSupported []string     `json:"delivery_methods_supported"`
	ConfigurationEndpoint    string       `json:"configuration_endpoint"`
	StatusEndpoint           string       `json:"status_endpoint"`
	AddSubjectEndpoint       string       `json:"add_subject_endpoint"`
	RemoveSubjectEndpoint    string       `json:"remove_subject_endpoint"`
	VerificationEndpoint     string       `json:"verification_endpoint"`
	AuthorizationSchemes     []AuthScheme `json:"authorization_schemes"`
	DefaultSubjects          string       `json:"default_subjects"`
	CriticalSubjectMembers   []string     `json:"critical_subject_members,omitempty"`
}

// AuthScheme names one authorization scheme (SSF 1.0 §6.1.1).
type AuthScheme struct {
	SpecURN string `json:"spec_urn"`
}

func (s *Server) metadata() Metadata {
	c := &s.cfg
	return Metadata{
		SpecVersion:              "1_0",
		Issuer:                   c.Issuer,
		JWKSURI:                  c.JWKSURI,
		DeliveryMethodsSupported: []string{MethodPush, MethodPoll},
		ConfigurationEndpoint:    c.BaseURL + StreamsPath,
		StatusEndpoint:           c.BaseURL + StatusPath,
		AddSubjectEndpoint:       c.BaseURL + AddSubjectPath,
		RemoveSubjectEndpoint:    c.BaseURL + RemoveSubjectPath,
		VerificationEndpoint:     c.BaseURL + VerifyPath,
		// OAuth 2.0 bearer tokens (RFC 6750 over RFC 6749), static or JWT.
		AuthorizationSchemes: []AuthScheme{{SpecURN: "urn:ietf:rfc:6749"}},
		DefaultSubjects:      c.DefaultSubjects,
		// What a receiver must interpret is the operator's to say: the
		// transmitter only matches members, it never interprets them.
		CriticalSubjectMembers: c.CriticalSubjectMembers,
	}
}

// wellKnownPath is where the metadata is served: §6.2 inserts the
// well-known segment between the host and the issuer's path, so the issuer
// https://tx.example/issuer1 is discovered at
// https://tx.example/.well-known/ssf-configuration/issuer1.
func wellKnownPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return WellKnownPath
	}
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	if p == "" {
		return WellKnownPath
	}
	return WellKnownPath + p
}

func (s *Server) handleMetadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use GET")
		return
	}
	// The metadata is public and changes only with the configuration.
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, s.metadata())
}

// knownEventTypes are the CAEP and RISC types setrelay can build. The SSF
// stream-management types (verification, stream-updated) are not offered
// for request: every stream receives them.
func knownEventTypes() []string {
	var out []string
	for _, t := range intent.KnownTypes() {
		if t.Profile == intent.ProfileSSF {
			continue
		}
		out = append(out, t.URI)
	}
	return out
}
