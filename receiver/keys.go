package receiver

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySource gives the public keys SETs are verified against.
type keySource interface {
	// keys returns the current key set. unknownKID names a kid a SET carried
	// that the last answer did not hold, so a remote source may re-fetch.
	keys(ctx context.Context, unknownKID string) ([]jose.JSONWebKey, error)
}

type staticKeys []jose.JSONWebKey

func (s staticKeys) keys(context.Context, string) ([]jose.JSONWebKey, error) { return s, nil }

func newKeySource(cfg *Config) (keySource, error) {
	switch {
	case cfg.Keys != nil:
		return publicOnly(cfg.Keys.Keys)
	case cfg.JWKSFile != "":
		data, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("reading JWKS file: %w", err)
		}
		ks, err := parseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("JWKS file %s: %w", cfg.JWKSFile, err)
		}
		return publicOnly(ks)
	case cfg.PEMFile != "":
		data, err := os.ReadFile(cfg.PEMFile)
		if err != nil {
			return nil, fmt.Errorf("reading PEM file: %w", err)
		}
		ks, err := parsePEM(data)
		if err != nil {
			return nil, fmt.Errorf("PEM file %s: %w", cfg.PEMFile, err)
		}
		return staticKeys(ks), nil
	default:
		return &remoteKeys{url: cfg.JWKSURL, client: cfg.HTTPClient, timeout: cfg.JWKSTimeout, refresh: cfg.JWKSRefresh, now: cfg.Now}, nil
	}
}

// publicOnly keeps only the public half of each key, so a private key handed
// in by mistake is never used for anything but verification.
func publicOnly(in []jose.JSONWebKey) (staticKeys, error) {
	if len(in) == 0 {
		return nil, errors.New("key set is empty")
	}
	out := make(staticKeys, 0, len(in))
	for _, k := range in {
		p := k.Public()
		if !p.Valid() {
			return nil, fmt.Errorf("key %q is not a valid asymmetric key", k.KeyID)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseJWKS accepts a JWKS ({"keys":[...]}) or a single JWK.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	if _, ok := probe["keys"]; ok {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("invalid JWKS: %w", err)
		}
		return set.Keys, nil
	}
	var k jose.JSONWebKey
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("invalid JWK: %w", err)
	}
	return []jose.JSONWebKey{k}, nil
}

// parsePEM reads every PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE block.
func parsePEM(data []byte) ([]jose.JSONWebKey, error) {
	var out []jose.JSONWebKey
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		var (
			pub any
			err error
		)
		switch b.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "CERTIFICATE":
			var c *x509.Certificate
			c, err = x509.ParseCertificate(b.Bytes)
			if err == nil {
				pub = c.PublicKey
			}
		default:
			// Refuse private keys outright: the receiver's operator should
			// only ever hold the transmitter's public key.
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", b.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", b.Type, err)
		}
		k := jose.JSONWebKey{Key: pub}
		if !k.Valid() {
			return nil, fmt.Errorf("PEM block %q: unsupported key type %T", b.Type, pub)
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM public key found")
	}
	return out, nil
}

// minRefetch bounds how often an unknown kid can make the receiver fetch the
// JWKS again, so a stream of SETs with a bogus kid cannot hammer the server.
const minRefetch = 10 * time.Second

// remoteKeys fetches a JWKS over HTTP and caches it.
type remoteKeys struct {
	url     string
	client  *http.Client
	timeout time.Duration
	refresh time.Duration
	now     func() time.Time

	mu      sync.Mutex
	cached  []jose.JSONWebKey
	fetched time.Time
}

func (r *remoteKeys) keys(ctx context.Context, unknownKID string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	stale := r.cached == nil || now.Sub(r.fetched) >= r.refresh
	if unknownKID != "" && now.Sub(r.fetched) >= minRefetch {
		stale = true
	}
	if !stale {
		return r.cached, nil
	}
	ks, err := r.fetch(ctx)
	if err != nil {
		if r.cached != nil {
			// Keep verifying with the last good set: a JWKS endpoint blip
			// must not turn into rejected SETs.
			return r.cached, nil
		}
		return nil, err
	}
	r.cached, r.fetched = ks, now
	return ks, nil
}

func (r *remoteKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching JWKS: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading JWKS: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching JWKS from %s: HTTP %d", r.url, resp.StatusCode)
	}
	ks, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", r.url, err)
	}
	return publicOnly(ks)
}
