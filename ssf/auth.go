package ssf

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Principal is an authenticated receiver: the client that owns streams,
// the aud of its streams, and what its credential allows.
type Principal struct {
	ClientID string
	Audience []string
	Scopes   []string
}

// Can reports whether p's credential carries scope.
func (p *Principal) Can(scope string) bool { return slices.Contains(p.Scopes, scope) }

// errUnauthenticated is a missing, malformed or unknown credential: 401.
var errUnauthenticated = errors.New("missing or invalid bearer token")

// errNoCredentials is a request without a bearer token at all, which
// RFC 6750 §3.1 answers with a challenge that carries no error code.
var errNoCredentials = fmt.Errorf("%w: none was sent", errUnauthenticated)

// authenticator checks one kind of bearer token. It returns
// errUnauthenticated for a token it does not accept.
type authenticator interface {
	authenticate(ctx context.Context, token string) (*Principal, error)
}

// staticTokens accepts the clients' configured tokens, compared by their
// SHA-256 in constant time, so neither the tokens nor their timing are
// kept or leaked.
type staticTokens struct {
	clients []staticClient
}

type staticClient struct {
	hash [32]byte
	p    Principal
}

func newStaticTokens(clients []Client) *staticTokens {
	s := &staticTokens{}
	for _, c := range clients {
		var sc staticClient
		b, _ := hex.DecodeString(c.TokenSHA256) // Validate checked it
		copy(sc.hash[:], b)
		scopes := c.Scopes
		if len(scopes) == 0 {
			scopes = []string{ScopeRead, ScopeManage, ScopePoll}
		}
		sc.p = Principal{ClientID: c.ID, Audience: slices.Clone(c.Audience), Scopes: slices.Clone(scopes)}
		s.clients = append(s.clients, sc)
	}
	return s
}

func (s *staticTokens) authenticate(_ context.Context, token string) (*Principal, error) {
	h := hashBytes(token)
	var found *Principal
	for i := range s.clients {
		// Compare with every client, not stopping at a match, so the
		// time taken says nothing about which client matched.
		if subtle.ConstantTimeCompare(h[:], s.clients[i].hash[:]) == 1 {
			found = &s.clients[i].p
		}
	}
	if found == nil {
		return nil, errUnauthenticated
	}
	p := *found
	return &p, nil
}

func hashBytes(token string) [32]byte {
	var out [32]byte
	b, _ := hex.DecodeString(HashToken(token))
	copy(out[:], b)
	return out
}

// bearer extracts the RFC 6750 bearer token of r, or "".
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// authenticate runs the configured authenticators in order: a token one
// of them accepts identifies the receiver. Any other failure (the
// authorization server's keys unreachable) is returned as is: the caller
// answers 503, not 401, so a receiver does not discard a good token.
func (s *Server) authenticate(r *http.Request) (*Principal, error) {
	token := bearer(r)
	if token == "" {
		return nil, errNoCredentials
	}
	var lastErr error = errUnauthenticated
	for _, a := range s.auth {
		p, err := a.authenticate(r.Context(), token)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, errUnauthenticated) {
			lastErr = err
		}
	}
	return nil, lastErr
}
