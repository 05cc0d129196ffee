//go:build cgo

package keysource

import (
	"context"
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/miekg/pkcs11"
	"github.com/thales-e-security/pool"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/signer"
)

// PKCS11Supported reports whether this build can use PKCS#11 tokens. It
// needs cgo: crypto11 loads the vendor's module with dlopen at run time, so
// a cgo build links only libc and runs without any PKCS#11 library
// installed until a pkcs11 key is configured.
const PKCS11Supported = true

// pkcs11Key is a key pair on a token as a crypto.Signer. crypto11 takes a
// session from its pool per call, so signatures run in parallel up to the
// pool size (Options.Sessions).
//
// crypto11 puts a session back in its pool even after a call on it failed,
// so once the token loses its sessions (an HSM restart, a network HSM that
// dropped the connection, a token pulled and put back) every later call
// would fail until the process restarts. pkcs11Key recovers instead: a
// failure that means the sessions or the login are gone (needsReopen)
// closes the crypto11 context and opens a new one, which logs in again and
// finds the key pair again. One caller reopens, under mu, per generation;
// the others that failed on the old generation just retry on the new one,
// and after a failed reopen nobody tries again for reopenCooldown, so a
// device that is down is not hammered by every worker at once.
type pkcs11Key struct {
	h         *config.PKCS11Key
	o         Options
	id, label []byte
	pub       crypto.PublicKey // read once at open; a reopen must find the same key

	mu         sync.RWMutex
	c11        *crypto11.Context // nil after a failed reopen, until the next one succeeds
	s          crypto11.Signer
	gen        uint64
	lastFailed time.Time // of the last failed reopen
	closed     bool
	// refusedPIN is the SHA-256 of the last PIN the token refused
	// (CKR_PIN_INCORRECT and the like), so that a reopen does not log in
	// with it again: tokens lock the user PIN after a few failed logins,
	// and a reopen is tried on every probe of a blocked receiver. Only a
	// digest is kept, as the PIN itself is not needed to recognise it.
	refusedPIN *[sha256.Size]byte

	reopens atomic.Int64 // successful reopens, for tests
	logins  atomic.Int64 // login attempts by reopens, for tests
}

// reopenCooldown is how long after a failed reopen signers fail fast
// (transient) rather than try again.
const reopenCooldown = time.Second

func (k *pkcs11Key) Public() crypto.PublicKey { return k.pub }

func (k *pkcs11Key) current() (crypto11.Signer, uint64) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.s, k.gen
}

func (k *pkcs11Key) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s, gen := k.current()
	if s == nil {
		// The last reopen failed: try again (or fail fast in the cooldown).
		if err := k.reopen(gen); err != nil {
			return nil, err
		}
		if s, gen = k.current(); s == nil {
			return nil, fmt.Errorf("%w: pkcs11 token %s is not open", signer.ErrTransient, tokenName(k.h))
		}
	}
	sig, err := s.Sign(r, digest, opts)
	if err == nil {
		return sig, nil
	}
	if !needsReopen(err) {
		if _, now := k.current(); now != gen {
			// Another signer reopened the pool under this call (the
			// old context is closed): not this digest's fault.
			return k.retry(r, digest, opts, err)
		}
		return nil, signFailure("the pkcs11 token", classifyPKCS11(err))
	}
	if rerr := k.reopen(gen); rerr != nil {
		// The reopen's failure decides the class: the lost session only
		// said that a reopen was needed, and a refused PIN or a missing
		// key must block rather than be retried as transient.
		return nil, fmt.Errorf("reopening the token after %v failed: %w", err, rerr)
	}
	return k.retry(r, digest, opts, err)
}

// retry signs once more on the current generation after a reopen. A
// failure now is classified as usual, with the first failure for context.
func (k *pkcs11Key) retry(r io.Reader, digest []byte, opts crypto.SignerOpts, first error) ([]byte, error) {
	s, _ := k.current()
	if s == nil {
		return nil, fmt.Errorf("%w: pkcs11 token %s is not open after %w", signer.ErrTransient, tokenName(k.h), first)
	}
	sig, err := s.Sign(r, digest, opts)
	if err != nil {
		return nil, signFailure("the pkcs11 token", classifyPKCS11(err))
	}
	return sig, nil
}

// reopen replaces the crypto11 context of generation gen with a new one,
// unless another caller already did. The old context is closed first (it
// waits for calls still using its sessions, which fail fast on a lost
// session), so that when it was the module's last user the module is
// finalised and initialised again, which a removed device needs.
func (k *pkcs11Key) reopen(gen uint64) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.closed:
		return fmt.Errorf("%w: pkcs11 key is closed", signer.ErrTransient)
	case k.gen != gen:
		return nil // reopened meanwhile
	case k.c11 == nil && time.Since(k.lastFailed) < reopenCooldown:
		return fmt.Errorf("%w: pkcs11 token %s: reopening failed less than %s ago", signer.ErrTransient, tokenName(k.h), reopenCooldown)
	}
	if k.c11 != nil {
		_ = k.c11.Close()
		k.c11, k.s = nil, nil
	}
	k.gen++
	c11, pair, err := k.open()
	if err != nil {
		k.lastFailed = time.Now()
		return err
	}
	k.c11, k.s = c11, pair
	k.reopens.Add(1)
	return nil
}

// open configures a crypto11 context and finds the key pair, which must be
// the one opened first: a different key under the same label or id would
// sign SETs that no receiver's copy of the JWKS verifies.
//
// It is called with mu held, so refusedPIN needs no lock of its own.
func (k *pkcs11Key) open() (*crypto11.Context, crypto11.Signer, error) {
	pin, err := readPIN(k.h, k.o)
	if err != nil {
		// A PIN file that is gone or empty is the operator's to fix.
		return nil, nil, fmt.Errorf("%w: %w", signer.ErrKeyUnusable, err)
	}
	digest := sha256.Sum256([]byte(pin))
	if k.refusedPIN != nil && subtle.ConstantTimeCompare(digest[:], k.refusedPIN[:]) == 1 {
		return nil, nil, fmt.Errorf("%w: pkcs11 token %s refused the user PIN from %s, which has not changed since; not logging in with it again, so the token does not lock the PIN: %s",
			signer.ErrKeyUnusable, tokenName(k.h), pinSource(k.h), pinAdvice(k.h))
	}
	k.logins.Add(1)
	c11, err := configurePKCS11(k.h, pin, k.o)
	if err != nil {
		if isPINRefused(err) {
			k.refusedPIN = &digest
		}
		if c := classifyPKCS11(err); errors.Is(c, signer.ErrKeyUnusable) {
			return nil, nil, c
		}
		return nil, nil, fmt.Errorf("%w: %w", signer.ErrTransient, err)
	}
	k.refusedPIN = nil
	pair, err := findPair(c11, k.h, k.id, k.label)
	if err != nil {
		c11.Close()
		return nil, nil, fmt.Errorf("%w: %w", signer.ErrKeyUnusable, err)
	}
	if k.pub != nil {
		if p, ok := pair.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !p.Equal(k.pub) {
			c11.Close()
			return nil, nil, fmt.Errorf("%w: pkcs11 token %s: key pair %s is no longer the key setrelay started with; restart to publish its new public key", signer.ErrKeyUnusable, tokenName(k.h), keyName(k.h))
		}
	}
	return c11, pair, nil
}

// Close closes the current context; the key does not reopen after it.
func (k *pkcs11Key) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closed = true
	if k.c11 == nil {
		return nil
	}
	err := k.c11.Close()
	k.c11, k.s = nil, nil
	return err
}

// needsReopen reports whether a token error means this process's sessions
// or login are gone, so that only a new context can recover.
func needsReopen(err error) bool {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return false
	}
	switch code {
	case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID:
		return true
	}
	return false
}

// classifyPKCS11 wraps a token error with the class the worker acts on.
func classifyPKCS11(err error) error {
	var code pkcs11.Error
	if errors.As(err, &code) {
		switch code {
		case pkcs11.CKR_SESSION_HANDLE_INVALID, pkcs11.CKR_SESSION_CLOSED, pkcs11.CKR_SESSION_COUNT,
			pkcs11.CKR_DEVICE_ERROR, pkcs11.CKR_DEVICE_MEMORY, pkcs11.CKR_HOST_MEMORY,
			pkcs11.CKR_FUNCTION_FAILED, pkcs11.CKR_FUNCTION_CANCELED, pkcs11.CKR_OPERATION_ACTIVE,
			pkcs11.CKR_DEVICE_REMOVED, pkcs11.CKR_TOKEN_NOT_PRESENT, pkcs11.CKR_CANT_LOCK,
			pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED:
			return fmt.Errorf("%w: %w", signer.ErrTransient, err)
		case pkcs11.CKR_KEY_HANDLE_INVALID, pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED,
			pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_USER_NOT_LOGGED_IN, pkcs11.CKR_PIN_EXPIRED,
			pkcs11.CKR_PIN_LOCKED, pkcs11.CKR_TOKEN_NOT_RECOGNIZED, pkcs11.CKR_MECHANISM_INVALID,
			pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
			return fmt.Errorf("%w: %w", signer.ErrKeyUnusable, err)
		}
	}
	// Waiting for a free session past the call timeout: the token is busy.
	if errors.Is(err, pool.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: no PKCS#11 session free: %w", signer.ErrTransient, err)
	}
	return err
}

// isPINRefused reports whether a login failed because of the PIN itself,
// which trying again with the same PIN cannot cure.
func isPINRefused(err error) bool {
	var code pkcs11.Error
	if !errors.As(err, &code) {
		return false
	}
	switch code {
	case pkcs11.CKR_PIN_INCORRECT, pkcs11.CKR_PIN_INVALID, pkcs11.CKR_PIN_LEN_RANGE:
		return true
	}
	return false
}

// pinSource names where the PIN was read, never the PIN.
func pinSource(h *config.PKCS11Key) string {
	if h.PinFile != "" {
		return "pin_file " + h.PinFile
	}
	return "pin_env " + h.PinEnv
}

// pinAdvice says how to fix a refused PIN.
func pinAdvice(h *config.PKCS11Key) string {
	if h.PinFile != "" {
		return "write the token's user PIN to " + h.PinFile + " (it is read again before the next attempt)"
	}
	return "set " + h.PinEnv + " to the token's user PIN and restart"
}

// configurePKCS11 opens the module, finds the token and logs in. The pool
// gets Sessions sessions for signing plus the one crypto11 keeps logged in.
func configurePKCS11(h *config.PKCS11Key, pin string, o Options) (*crypto11.Context, error) {
	ctx, err := crypto11.Configure(&crypto11.Config{
		Path:            h.Module,
		TokenLabel:      h.TokenLabel,
		SlotNumber:      h.Slot,
		Pin:             pin,
		MaxSessions:     max(2, o.Sessions+1),
		PoolWaitTimeout: o.CallTimeout,
	})
	if err != nil {
		if isPINRefused(err) {
			return nil, fmt.Errorf("pkcs11 module %s, token %s: the token refused the user PIN from %s (%w); %s",
				h.Module, tokenName(h), pinSource(h), err, pinAdvice(h))
		}
		return nil, fmt.Errorf("pkcs11 module %s, token %s: %w", h.Module, tokenName(h), err)
	}
	return ctx, nil
}

// loginPKCS11 reads the PIN and configures a context with it.
func loginPKCS11(h *config.PKCS11Key, o Options) (*crypto11.Context, error) {
	pin, err := readPIN(h, o)
	if err != nil {
		return nil, err
	}
	return configurePKCS11(h, pin, o)
}

func tokenName(h *config.PKCS11Key) string {
	if h.Slot != nil {
		return fmt.Sprintf("in slot %d", *h.Slot)
	}
	return fmt.Sprintf("%q", h.TokenLabel)
}

func keyName(h *config.PKCS11Key) string {
	switch {
	case h.KeyLabel != "" && h.KeyID != "":
		return fmt.Sprintf("label %q, id %s", h.KeyLabel, h.KeyID)
	case h.KeyID != "":
		return "id " + h.KeyID
	default:
		return fmt.Sprintf("label %q", h.KeyLabel)
	}
}

func openPKCS11(_ context.Context, kc config.Key, o Options) (*signer.Key, error) {
	pk, err := openPKCS11Key(kc.PKCS11, o)
	if err != nil {
		return nil, err
	}
	k, err := signer.NewRemoteKey(pk, kc.ID, jose.SignatureAlgorithm(kc.Alg), pk)
	if err != nil {
		pk.Close()
		return nil, fmt.Errorf("pkcs11 key %s: %w", keyName(kc.PKCS11), err)
	}
	return k, nil
}

// openPKCS11Key logs in to the token and finds the key pair h names.
func openPKCS11Key(h *config.PKCS11Key, o Options) (*pkcs11Key, error) {
	id, err := hex.DecodeString(h.KeyID)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 key_id %q is not hex", h.KeyID)
	}
	c11, err := loginPKCS11(h, o)
	if err != nil {
		return nil, err
	}
	var label []byte
	if h.KeyLabel != "" {
		label = []byte(h.KeyLabel)
	}
	if len(id) == 0 {
		id = nil
	}
	pair, err := findPair(c11, h, id, label)
	if err != nil {
		c11.Close()
		return nil, err
	}
	return &pkcs11Key{h: h, o: o, id: id, label: label, pub: pair.Public(), c11: c11, s: pair}, nil
}

// findPair finds exactly one key pair by id and/or label. Two matches is
// an error rather than a guess: signing with the wrong one of two keys
// labelled alike would have every SET rejected.
func findPair(c11 *crypto11.Context, h *config.PKCS11Key, id, label []byte) (crypto11.Signer, error) {
	pairs, err := c11.FindKeyPairs(id, label)
	if err != nil {
		return nil, fmt.Errorf("pkcs11 token %s: find key pair %s: %w", tokenName(h), keyName(h), err)
	}
	switch len(pairs) {
	case 0:
		return nil, fmt.Errorf("pkcs11 token %s has no key pair with %s (a private key with a CKA_ID and its public key); create one with `setrelay keys generate --pkcs11`", tokenName(h), keyName(h))
	case 1:
		return pairs[0], nil
	default:
		return nil, fmt.Errorf("pkcs11 token %s has %d key pairs with %s; give key_id as well to choose one", tokenName(h), len(pairs), keyName(h))
	}
}

// GeneratePKCS11Request describes a new key pair on a token.
type GeneratePKCS11Request struct {
	Alg jose.SignatureAlgorithm
	// Token selects the token and holds the PIN source; KeyLabel is the new
	// key's CKA_LABEL, KeyID its CKA_ID in hex (random if empty).
	Token config.PKCS11Key
}

// GeneratePKCS11 creates a key pair for alg on the token: RSA 2048 for
// RS256 and PS256, P-256 for ES256, P-384 for ES384. The private key is
// created sensitive and not extractable (CKA_SENSITIVE true,
// CKA_EXTRACTABLE false), so it can sign but never leave the token. It
// refuses a label or id that is already taken. It returns the CKA_ID in hex.
func GeneratePKCS11(r GeneratePKCS11Request, o Options) (keyID string, err error) {
	o = o.withDefaults()
	h := r.Token
	if h.KeyLabel == "" {
		return "", errors.New("pkcs11: give the new key a label (--key-label)")
	}
	id, err := hex.DecodeString(h.KeyID)
	if err != nil {
		return "", fmt.Errorf("pkcs11 key id %q is not hex", h.KeyID)
	}
	if len(id) == 0 {
		id = make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return "", err
		}
	}
	c11, err := loginPKCS11(&h, o)
	if err != nil {
		return "", err
	}
	defer c11.Close()
	for _, probe := range []struct{ id, label []byte }{{nil, []byte(h.KeyLabel)}, {id, nil}} {
		existing, err := c11.FindKeyPairs(probe.id, probe.label)
		if err != nil {
			return "", fmt.Errorf("pkcs11 token %s: %w", tokenName(&h), err)
		}
		if len(existing) > 0 {
			return "", fmt.Errorf("pkcs11 token %s already holds a key pair with label %q or id %x; choose another --key-label/--key-id", tokenName(&h), h.KeyLabel, id)
		}
	}
	label := []byte(h.KeyLabel)
	switch r.Alg {
	case jose.RS256, jose.PS256:
		_, err = c11.GenerateRSAKeyPairWithLabel(id, label, signer.MinRSABits)
	case jose.ES256:
		_, err = c11.GenerateECDSAKeyPairWithLabel(id, label, elliptic.P256())
	case jose.ES384:
		_, err = c11.GenerateECDSAKeyPairWithLabel(id, label, elliptic.P384())
	default:
		return "", fmt.Errorf("%w: %s cannot be generated on a PKCS#11 token (use RS256, PS256, ES256 or ES384)", signer.ErrUnsupportedAlgorithm, r.Alg)
	}
	if err != nil {
		return "", fmt.Errorf("pkcs11 token %s: generate %s key pair: %w", tokenName(&h), r.Alg, err)
	}
	return hex.EncodeToString(id), nil
}

// PrivateKeyAttributes reads CKA_SENSITIVE and CKA_EXTRACTABLE of a key
// pair's private key, to show it cannot leave the token.
func PrivateKeyAttributes(kc config.Key, o Options) (sensitive, extractable bool, err error) {
	o = o.withDefaults()
	h := kc.PKCS11
	if h == nil {
		return false, false, errors.New("not a pkcs11 key")
	}
	id, err := hex.DecodeString(h.KeyID)
	if err != nil || len(id) == 0 {
		id = nil
	}
	var label []byte
	if h.KeyLabel != "" {
		label = []byte(h.KeyLabel)
	}
	c11, err := loginPKCS11(h, o)
	if err != nil {
		return false, false, err
	}
	defer c11.Close()
	pair, err := findPair(c11, h, id, label)
	if err != nil {
		return false, false, err
	}
	attrs, err := c11.GetAttributes(pair, []crypto11.AttributeType{crypto11.CkaSensitive, crypto11.CkaExtractable})
	if err != nil {
		return false, false, err
	}
	flag := func(t crypto11.AttributeType) bool {
		a := attrs[t]
		return a != nil && len(a.Value) == 1 && a.Value[0] == 1
	}
	return flag(crypto11.CkaSensitive), flag(crypto11.CkaExtractable), nil
}
