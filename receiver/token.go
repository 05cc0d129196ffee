package receiver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxRetired bounds the memory of tokens no longer valid; it only serves to
// tell "expired" and "revoked" apart from "never issued" in error messages.
const maxRetired = 256

// tokenStore holds the one current access token, as GOV.UK's endpoint does:
// asking again within the lifetime returns the same token. Only SHA-256
// digests of retired tokens are kept.
type tokenStore struct {
	lifetime time.Duration
	now      func() time.Time

	mu      sync.Mutex
	current string
	expires time.Time
	retired map[[32]byte]string // digest -> VTokenExpired or VTokenRevoked
	order   [][32]byte
}

// issue returns the current token, minting a new one when there is none or
// it has expired. fresh reports whether it was minted now.
func (s *tokenStore) issue() (tok string, expiresIn time.Duration, fresh bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.current != "" && now.Before(s.expires) {
		return s.current, s.expires.Sub(now), false
	}
	if s.current != "" {
		s.retire(VTokenExpired)
	}
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	s.current = base64.RawURLEncoding.EncodeToString(b[:])
	s.expires = now.Add(s.lifetime)
	return s.current, s.lifetime, true
}

// check returns "" for the current, unexpired token, else the violation kind.
func (s *tokenStore) check(tok string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.current)) == 1 {
		if s.now().Before(s.expires) {
			return ""
		}
		s.retire(VTokenExpired)
		return VTokenExpired
	}
	if reason, ok := s.retired[sha256.Sum256([]byte(tok))]; ok {
		return reason
	}
	return VTokenInvalid
}

// revoke retires the current token, so its next use is refused and the next
// token request mints a new one. It reports whether there was one to revoke.
func (s *tokenStore) revoke() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == "" {
		return false
	}
	s.retire(VTokenRevoked)
	return true
}

func (s *tokenStore) retire(reason string) {
	if s.retired == nil {
		s.retired = make(map[[32]byte]string)
	}
	d := sha256.Sum256([]byte(s.current))
	if _, seen := s.retired[d]; !seen {
		s.order = append(s.order, d)
	}
	s.retired[d] = reason
	if len(s.order) > maxRetired {
		delete(s.retired, s.order[0])
		s.order = s.order[1:]
	}
	s.current = ""
}

// tokenResponse is RFC 6749 §5.1.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// serveToken is the client-credentials grant (RFC 6749 §4.4) with client
// authentication by HTTP Basic or by form parameters (§2.3.1).
func (r *Receiver) serveToken(w http.ResponseWriter, req *http.Request) {
	r.stats.tokenRequest()
	if r.outage(w) {
		return
	}
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.tokenError(w, http.StatusMethodNotAllowed, "invalid_request", "the token endpoint takes POST")
		return
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		r.tokenError(w, http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
		return
	}
	if req.URL.RawQuery != "" {
		r.tokenError(w, http.StatusBadRequest, "invalid_request", "parameters belong in the body, not the URL")
		return
	}
	req.Body = http.MaxBytesReader(w, req.Body, 16<<10)
	if err := req.ParseForm(); err != nil {
		r.tokenError(w, http.StatusBadRequest, "invalid_request", "cannot parse the form body")
		return
	}
	form := req.PostForm
	for k, v := range form {
		if len(v) > 1 {
			// RFC 6749 §3.2: parameters must not be repeated.
			r.tokenError(w, http.StatusBadRequest, "invalid_request", fmt.Sprintf("parameter %q is repeated", k))
			return
		}
	}
	id, secret, basic, err := basicCredentials(req)
	if err != nil {
		r.tokenError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	_, formID := form["client_id"]
	_, formSecret := form["client_secret"]
	switch {
	case basic && formSecret:
		r.tokenError(w, http.StatusBadRequest, "invalid_request", "client authenticated twice (Basic and client_secret); use one method")
		return
	case basic:
		if formID && form.Get("client_id") != id {
			r.tokenError(w, http.StatusBadRequest, "invalid_request", "client_id in the form differs from the Basic credentials")
			return
		}
	case formID || formSecret:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	default:
		w.Header().Set("WWW-Authenticate", `Basic realm="setrelay-receiver"`)
		r.tokenError(w, http.StatusUnauthorized, "invalid_client", "no client authentication: use HTTP Basic or client_id and client_secret")
		return
	}
	if !r.clientOK(id, secret) {
		if basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="setrelay-receiver"`)
		}
		r.tokenError(w, http.StatusUnauthorized, "invalid_client", "unknown client or wrong secret")
		return
	}
	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		r.tokenError(w, http.StatusBadRequest, "invalid_request", "grant_type is missing")
		return
	default:
		r.tokenError(w, http.StatusBadRequest, "unsupported_grant_type", fmt.Sprintf("grant_type %q is not supported; use client_credentials", gt))
		return
	}
	scope, ok := r.grantScope(form.Get("scope"))
	if !ok {
		r.tokenError(w, http.StatusBadRequest, "invalid_scope", fmt.Sprintf("scope %q is not allowed; allowed: %q", form.Get("scope"), strings.Join(r.cfg.Scopes, " ")))
		return
	}
	tok, ttl, fresh := r.tokens.issue()
	if fresh {
		r.stats.tokenIssued()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	_ = json.NewEncoder(w).Encode(tokenResponse{
		AccessToken: tok,
		TokenType:   "Bearer",
		// Rounded up: 0 would read as "no expiry" to many clients.
		ExpiresIn: int64(math.Ceil(ttl.Seconds())),
		Scope:     scope,
	})
}

func (r *Receiver) clientOK(id, secret string) bool {
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(r.cfg.ClientID))
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(r.cfg.ClientSecret))
	return idOK&secretOK == 1
}

// grantScope checks a requested scope against Config.Scopes.
func (r *Receiver) grantScope(requested string) (string, bool) {
	if len(r.cfg.Scopes) == 0 {
		return "", true
	}
	fields := strings.Fields(requested)
	if len(fields) == 0 {
		return strings.Join(r.cfg.Scopes, " "), true
	}
	for _, s := range fields {
		if !slices.Contains(r.cfg.Scopes, s) {
			return "", false
		}
	}
	return strings.Join(fields, " "), true
}

// basicCredentials decodes HTTP Basic client credentials, which RFC 6749
// §2.3.1 says are form-urlencoded before the base64 step.
func basicCredentials(req *http.Request) (id, secret string, ok bool, err error) {
	h := req.Header.Get("Authorization")
	if h == "" {
		return "", "", false, nil
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", false, fmt.Errorf("authorization scheme %q is not supported at the token endpoint; use Basic", scheme)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
	if err != nil {
		return "", "", false, fmt.Errorf("basic credentials are not base64: %w", err)
	}
	u, p, found := strings.Cut(string(raw), ":")
	if !found {
		return "", "", false, fmt.Errorf("basic credentials lack a colon")
	}
	if id, err = url.QueryUnescape(u); err != nil {
		return "", "", false, fmt.Errorf("client id is not form-urlencoded: %w", err)
	}
	if secret, err = url.QueryUnescape(p); err != nil {
		return "", "", false, fmt.Errorf("client secret is not form-urlencoded: %w", err)
	}
	return id, secret, true, nil
}

// tokenError writes an RFC 6749 §5.2 error.
func (r *Receiver) tokenError(w http.ResponseWriter, status int, code, desc string) {
	r.stats.tokenError(code)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
