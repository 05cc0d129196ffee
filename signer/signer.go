package signer

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// MediaType is the JOSE "typ" header of every SET (RFC 8417 section 2.3):
// exactly "secevent+jwt", never "JWT" nor the full media type.
const MediaType = "secevent+jwt"

// Signer turns SET claims into compact JWS with one key.
//
// Build it once per key with New or NewOpaque and share it: it holds the two
// encoded protected headers (with and without "kid") so nothing but the
// payload and the signature is encoded per SET (see compact), and it is safe
// for concurrent use by many workers.
//
// Callers should depend on the method they use, not on this type; the worker
// takes
//
//	interface{ Sign(payload []byte, withKID bool) (string, error) }
//
// so a test or another key backend can stand in.
type Signer struct {
	alg     jose.SignatureAlgorithm
	kid     string
	withKID *compact
	noKID   *compact

	metrics  *Metrics
	limiter  *rate.Limiter
	maxWait  time.Duration
	duration prometheus.Observer
}

// Option adjusts a Signer built by New or NewOpaque.
type Option func(*Signer)

// WithMetrics records every signature's duration and every failure's
// reason in m, labelled with the key id.
func WithMetrics(m *Metrics) Option { return func(s *Signer) { s.metrics = m } }

// WithRateLimit caps signatures per second (keys[].max_sign_rate), to stay
// under a KMS account's request quota. A burst of one second's worth is
// allowed. A Sign that would wait longer than maxWait for its turn fails at
// once with an ErrTransient error, so the worker retries it later instead
// of holding a message past its ack deadline. perSecond <= 0 is no limit.
func WithRateLimit(perSecond float64, maxWait time.Duration) Option {
	return func(s *Signer) {
		if perSecond <= 0 {
			return
		}
		s.limiter = rate.NewLimiter(rate.Limit(perSecond), max(1, int(math.Ceil(perSecond))))
		s.maxWait = maxWait
	}
}

func (s *Signer) apply(opts []Option) *Signer {
	for _, o := range opts {
		o(s)
	}
	if s.metrics != nil {
		s.duration = s.metrics.duration.WithLabelValues(s.kid)
	}
	return s
}

// New builds the Signer for k. The algorithm and key id are fixed here, so a
// misconfigured key fails at start-up, not on the first SET. A remote key
// (NewRemoteKey) signs through the go-jose OpaqueSigner interface (its
// adapter, remoteOpaque, is called exactly as go-jose calls it); its calls
// run in parallel, with no lock around them, so an HSM's session pool or
// KMS's request concurrency is the only bound.
func New(k *Key, opts ...Option) (*Signer, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("signer: empty key")
	}
	if err := checkAlg(k.Alg, k.priv.Public()); err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	if k.ID == "" {
		return nil, errors.New("signer: key has no id")
	}
	if k.remote {
		if _, err := SignerOpts(k.Alg); err != nil {
			return nil, fmt.Errorf("key %q: %w", k.ID, err)
		}
		pub := jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"}
		s, err := NewOpaque(remoteOpaque{priv: k.priv, alg: k.Alg, pub: &pub}, opts...)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	// The header has "kid" only for receivers configured to get it; some
	// (GOV.UK's own transmitter sends no kid) are configured without it.
	op := localOpaque(k, nil)
	with, err := newCompact(k.Alg, k.ID, op, k.priv.Public())
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	without, err := newCompact(k.Alg, "", op, k.priv.Public())
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	return (&Signer{alg: k.Alg, kid: k.ID, withKID: with, noKID: without}).apply(opts), nil
}

// NewOpaque builds a Signer around a key that never leaves its KMS or HSM.
//
// The algorithm is the public JWK's "alg" if set, else the first of
// s.Algs() on the allow-list; the key id is the public JWK's "kid", else its
// thumbprint. Both are read once: an OpaqueSigner that rotates keys behind
// the scenes must be wrapped in a new Signer when its key id changes, or
// receivers would be told the wrong kid.
func NewOpaque(s jose.OpaqueSigner, opts ...Option) (*Signer, error) {
	if s == nil {
		return nil, errors.New("signer: nil opaque signer")
	}
	pub := s.Public()
	if pub == nil || pub.Key == nil {
		return nil, errors.New("signer: opaque signer has no public key")
	}
	alg := jose.SignatureAlgorithm(pub.Algorithm)
	if alg == "" {
		for _, a := range s.Algs() {
			if checkAlg(a, pub.Key) == nil {
				alg = a
				break
			}
		}
	}
	if err := checkAlg(alg, pub.Key); err != nil {
		return nil, fmt.Errorf("opaque key: %w", err)
	}
	kid := pub.KeyID
	if kid == "" {
		tp, err := Thumbprint(pub.Key)
		if err != nil {
			return nil, err
		}
		kid = tp
	}
	// go-jose refuses an opaque signer that does not list the algorithm
	// or whose Public is a private key; so does this.
	if !slices.Contains(s.Algs(), alg) {
		return nil, fmt.Errorf("opaque key %q: %w: the signer does not offer %s", kid, ErrUnsupportedAlgorithm, alg)
	}
	if isPrivate(pub.Key) {
		return nil, fmt.Errorf("opaque key %q: Public() returned a private key", kid)
	}
	// kid and alg are read once here, so Sign neither copies a JWK nor
	// asks the KMS per SET.
	with, err := newCompact(alg, kid, s, pub.Key)
	if err != nil {
		return nil, fmt.Errorf("opaque key %q: %w", kid, err)
	}
	without, err := newCompact(alg, "", s, pub.Key)
	if err != nil {
		return nil, fmt.Errorf("opaque key %q: %w", kid, err)
	}
	return (&Signer{alg: alg, kid: kid, withKID: with, noKID: without}).apply(opts), nil
}

// isPrivate reports whether key is private key material, which a public
// JWK must never carry.
func isPrivate(key any) bool {
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, *ed25519.PrivateKey:
		return true
	}
	return false
}

// Sign returns the compact JWS of payload with header typ "secevent+jwt",
// alg, and kid unless withKID is false. payload is signed as given: pass
// the exact claims bytes (set.Build) so a redelivery re-signs identical
// claims.
//
// A failure of the key rather than of the SET wraps ErrTransient (worth
// retrying soon: throttled, busy, over max_sign_rate) or ErrKeyUnusable
// (disabled, deleted, denied: an operator must act).
func (s *Signer) Sign(payload []byte, withKID bool) (string, error) {
	b, err := s.SignBytes(payload, withKID)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// SignBytes is Sign returning the compact JWS as bytes the caller owns,
// for a caller that sends it as a request body: it saves converting the
// string back.
func (s *Signer) SignBytes(payload []byte, withKID bool) ([]byte, error) {
	c := s.noKID
	if withKID {
		c = s.withKID
	}
	if s.limiter != nil {
		if err := s.wait(); err != nil {
			s.failed(err)
			return nil, err
		}
	}
	start := time.Now()
	out, err := c.sign(payload)
	if err != nil {
		err = fmt.Errorf("sign with key %q: %w", s.kid, err)
		s.failed(err)
		return nil, err
	}
	if s.duration != nil {
		s.duration.Observe(time.Since(start).Seconds())
	}
	return out, nil
}

// KeyID is the kid this Signer puts in headers.
func (s *Signer) KeyID() string { return s.kid }

// Algorithm is the alg this Signer signs with.
func (s *Signer) Algorithm() jose.SignatureAlgorithm { return s.alg }

// wait takes a turn from the rate limiter, or fails with a transient error
// when the turn is further away than maxWait. It reserves first and then
// sleeps, so whether a turn is refused depends only on the rate, never on
// how long this goroutine waited to be scheduled.
func (s *Signer) wait() error {
	r := s.limiter.Reserve()
	if !r.OK() {
		return &rateLimitedError{kid: s.kid}
	}
	d := r.Delay()
	if s.maxWait > 0 && d > s.maxWait {
		// Give the turn back, so those who can wait are not delayed by
		// one that will not be taken.
		r.Cancel()
		return &rateLimitedError{kid: s.kid}
	}
	if d > 0 {
		time.Sleep(d)
	}
	return nil
}

func (s *Signer) failed(err error) {
	if s.metrics != nil {
		s.metrics.errors.WithLabelValues(s.kid, reason(err)).Inc()
	}
}
