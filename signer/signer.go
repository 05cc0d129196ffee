package signer

import (
	"errors"
	"fmt"
	"math"
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
// go-jose signers (with and without "kid") so no signer is rebuilt per SET,
// and it is safe for concurrent use by many workers.
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
	withKID jose.Signer
	noKID   jose.Signer

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
// (NewRemoteKey) is signed with through go-jose's OpaqueSigner seam; its
// calls run in parallel, with no lock around them, so an HSM's session
// pool or KMS's request concurrency is the only bound.
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
	// go-jose puts "kid" in the header when the signing key is a JWK with a
	// KeyID; with the bare private key it sends none. Some receivers (GOV.UK's
	// own transmitter sends no kid) are configured without it.
	with, err := newJoseSigner(k.Alg, jose.JSONWebKey{Key: k.priv, KeyID: k.ID, Algorithm: string(k.Alg)})
	if err != nil {
		return nil, fmt.Errorf("key %q: %w", k.ID, err)
	}
	without, err := newJoseSigner(k.Alg, k.priv)
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
	// The header's kid comes from Public(); fix the two answers up front so
	// Sign neither copies a JWK nor asks the KMS per SET.
	withPub := jose.JSONWebKey{Key: pub.Key, KeyID: kid, Algorithm: string(alg), Use: "sig"}
	noPub := jose.JSONWebKey{Key: pub.Key, Algorithm: string(alg), Use: "sig"}
	with, err := newJoseSigner(alg, fixedPublic{OpaqueSigner: s, pub: &withPub})
	if err != nil {
		return nil, fmt.Errorf("opaque key %q: %w", kid, err)
	}
	without, err := newJoseSigner(alg, fixedPublic{OpaqueSigner: s, pub: &noPub})
	if err != nil {
		return nil, fmt.Errorf("opaque key %q: %w", kid, err)
	}
	return (&Signer{alg: alg, kid: kid, withKID: with, noKID: without}).apply(opts), nil
}

// fixedPublic answers Public() with a fixed JWK so the header's kid is the
// one chosen at construction (or absent).
type fixedPublic struct {
	jose.OpaqueSigner
	pub *jose.JSONWebKey
}

func (f fixedPublic) Public() *jose.JSONWebKey { return f.pub }

func newJoseSigner(alg jose.SignatureAlgorithm, key any) (jose.Signer, error) {
	opts := (&jose.SignerOptions{}).WithType(MediaType)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return nil, fmt.Errorf("build go-jose signer for %s: %w", alg, err)
	}
	return s, nil
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
	js := s.noKID
	if withKID {
		js = s.withKID
	}
	if s.limiter != nil {
		if err := s.wait(); err != nil {
			s.failed(err)
			return "", err
		}
	}
	start := time.Now()
	obj, err := js.Sign(payload)
	if err != nil {
		err = fmt.Errorf("sign with key %q: %w", s.kid, err)
		s.failed(err)
		return "", err
	}
	if s.duration != nil {
		s.duration.Observe(time.Since(start).Seconds())
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize JWS with key %q: %w", s.kid, err)
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
