package ssf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// jwtRefresh bounds how often the authorization server's keys are fetched
// again: every jwtRefresh, and when a token names a key not yet seen, but
// never more than once per jwtMinRefresh (so forged kids cannot make the
// transmitter hammer the authorization server).
const (
	jwtRefresh    = 5 * time.Minute
	jwtMinRefresh = 30 * time.Second
)

// jwtAuth accepts RFC 9068 JWT access tokens signed by the configured
// authorization server: signature against its JWKS, iss, aud, exp/nbf,
// typ (accessTokenTyp), and the configured scope.
type jwtAuth struct {
	cfg JWTAuth

	mu      sync.Mutex
	keys    jwk.Set
	fetched time.Time
	// tried is when a fetch was last attempted and failed is its error
	// if it failed: a failing authorization server is asked again only
	// after jwtMinRefresh, however many tokens come in meanwhile.
	tried  time.Time
	failed error
}

func newJWTAuth(_ context.Context, cfg JWTAuth) (*jwtAuth, error) {
	if !strings.HasPrefix(cfg.JWKSURI, "https://") && !strings.HasPrefix(cfg.JWKSURI, "http://127.0.0.1") && !strings.HasPrefix(cfg.JWKSURI, "http://localhost") {
		return nil, fmt.Errorf("ssf: jwt.jwks_uri %q must be https", cfg.JWKSURI)
	}
	return &jwtAuth{cfg: cfg}, nil
}

// keySet returns the cached keys, fetching them when stale or when force
// is set and the last fetch is old enough.
func (a *jwtAuth) keySet(ctx context.Context, force bool) (jwk.Set, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	age := time.Since(a.fetched)
	if a.keys != nil && age < jwtRefresh && (!force || age < jwtMinRefresh) {
		return a.keys, nil
	}
	if a.failed != nil && time.Since(a.tried) < jwtMinRefresh {
		if a.keys != nil {
			return a.keys, nil
		}
		return nil, a.failed
	}
	a.tried = time.Now()
	// The fetch serves every request waiting on the lock and its failure
	// is remembered, so one client hanging up must not end it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	set, err := jwk.Fetch(fctx, a.cfg.JWKSURI)
	if err != nil {
		a.failed = fmt.Errorf("ssf: fetch authorization server keys: %w", err)
		if a.keys != nil {
			return a.keys, nil // keep serving with the keys we have
		}
		return nil, a.failed
	}
	a.keys, a.fetched, a.failed = set, time.Now(), nil
	return set, nil
}

func (a *jwtAuth) authenticate(ctx context.Context, token string) (*Principal, error) {
	if strings.Count(token, ".") != 2 {
		return nil, errUnauthenticated // not a JWT: a static token, maybe
	}
	if !accessTokenTyp(token) {
		return nil, errUnauthenticated
	}
	set, err := a.keySet(ctx, false)
	if err != nil {
		return nil, err
	}
	tok, err := a.parse(token, set)
	if err != nil && errors.Is(err, jws.VerifyError()) {
		// Perhaps the server rotated its keys: fetch them once more.
		if set, ferr := a.keySet(ctx, true); ferr == nil {
			tok, err = a.parse(token, set)
		}
	}
	if err != nil {
		return nil, errUnauthenticated
	}
	var scopeStr, clientID string
	_ = tok.Get("scope", &scopeStr)
	_ = tok.Get("client_id", &clientID)
	if clientID == "" {
		clientID, _ = tok.Subject()
	}
	if clientID == "" {
		return nil, errUnauthenticated
	}
	scopes := strings.Fields(scopeStr)
	if a.cfg.Scope != "" && !slices.Contains(scopes, a.cfg.Scope) {
		// A genuine token without the transmitter's scope: it may use
		// nothing here, which is what an empty scope list gives (403).
		scopes = nil
	}
	aud := a.cfg.ClientAudience[clientID]
	if len(aud) == 0 {
		aud = []string{clientID}
	}
	return &Principal{ClientID: "jwt:" + clientID, Audience: aud, Scopes: scopes}, nil
}

func (a *jwtAuth) parse(token string, set jwk.Set) (jwt.Token, error) {
	return jwt.Parse([]byte(token),
		jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)),
		jwt.WithValidate(true),
		jwt.WithIssuer(a.cfg.Issuer),
		jwt.WithAudience(a.cfg.Audience),
		jwt.WithAcceptableSkew(30*time.Second),
	)
}

// accessTokenTyp reports whether the token's JOSE typ allows it to be an
// access token. RFC 9068 §4 wants at+jwt (or application/at+jwt); the
// generic JWT, or no typ, is also taken, since many authorization servers
// issue access tokens so. Any other explicit type is a different kind of
// JWT (a SET, a logout token, a DPoP proof) that the same server may sign
// with the same key for the same audience, and is refused (RFC 8725 §3.11:
// explicit typing prevents one kind of JWT being taken for another).
func accessTokenTyp(token string) bool {
	msg, err := jws.Parse([]byte(token))
	if err != nil || len(msg.Signatures()) != 1 {
		return false
	}
	typ, ok := msg.Signatures()[0].ProtectedHeaders().Type()
	if !ok {
		return true
	}
	switch strings.ToLower(typ) {
	case "at+jwt", "application/at+jwt", "jwt", "application/jwt":
		return true
	}
	return false
}
