// Package signer holds setrelay's signing keys and turns SET claims into
// compact JWS with go-jose v4.
//
// Only asymmetric algorithms from a fixed allow-list are accepted (RS256,
// PS256, ES256, ES384, EdDSA): a receiver verifies a SET with a public key the
// transmitter handed over (GOV.UK asks for a PEM or a JWKS), so HMAC and
// "none" have no place here. Every Key carries its algorithm explicitly and
// the algorithm must match the key type, so a receiver never sees an alg
// header its key cannot verify.
//
// Private material never leaves a Key through fmt, errors or JSON: Key
// implements fmt.Formatter and its private half is unexported.
package signer

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA modulus accepted. GOV.UK and the CAEP
// interoperability profile require 2048 bits for RS256; PS256 gets the same
// floor because the attacks on short moduli do not care about padding.
const MinRSABits = 2048

// Algorithms lists the signature algorithms setrelay signs with, in the order
// they are documented. It is a fresh slice on every call so callers cannot
// widen the allow-list by accident.
func Algorithms() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}
}

// ErrUnsupportedAlgorithm is wrapped by every error about an algorithm
// outside the allow-list (including "none" and the HMAC family).
var ErrUnsupportedAlgorithm = errors.New("unsupported signature algorithm")

// ErrKeyMismatch is wrapped when a key's type or size does not fit the
// algorithm asked for (an EC key with RS256, a P-384 key with ES256, RSA
// below MinRSABits ...).
var ErrKeyMismatch = errors.New("key does not fit the signature algorithm")

// Key is one private signing key with its key id and algorithm.
//
// The zero value is not usable; obtain Keys from LoadKey or GenerateKey.
type Key struct {
	// ID is the JWS "kid" and the JWK "kid". LoadKey and GenerateKey default
	// it to the RFC 7638 SHA-256 thumbprint of the public key, base64url.
	ID string
	// Alg is the one algorithm this key signs with.
	Alg jose.SignatureAlgorithm
	// Warnings are non-fatal problems found while loading the key, such as
	// a key file readable by group or others. They are returned rather than
	// logged so the caller decides where they go.
	Warnings []string

	priv crypto.Signer
	// remote is set for keys held by an HSM or KMS (NewRemoteKey): priv
	// is then the device's crypto.Signer and go-jose reaches it through
	// the OpaqueSigner seam.
	remote bool
	closer io.Closer
}

// Public returns the public half of the key.
func (k *Key) Public() crypto.PublicKey {
	if k == nil || k.priv == nil {
		return nil
	}
	return k.priv.Public()
}

// String shows only the key id and algorithm, never key material.
func (k Key) String() string {
	return fmt.Sprintf("signer.Key{ID:%q, Alg:%s}", k.ID, k.Alg)
}

// GoString keeps %#v as safe as %v.
func (k Key) GoString() string { return k.String() }

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s, %q,
// %x ...) prints the same redacted form; without it %+v on a Key would
// print the unexported private key.
func (k Key) Format(f fmt.State, verb rune) {
	_, _ = f.Write([]byte(k.String()))
}

// checkAlg reports whether alg may be used with key, wrapping
// ErrUnsupportedAlgorithm or ErrKeyMismatch. The errors name only types,
// sizes and curves, never key bytes.
func checkAlg(alg jose.SignatureAlgorithm, pub crypto.PublicKey) error {
	switch alg {
	case jose.RS256, jose.PS256:
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("%w: %s needs an RSA key, got %s%s", ErrKeyMismatch, alg, keyKind(pub), mismatchAdvice(alg, pub))
		}
		if bits := k.N.BitLen(); bits < MinRSABits {
			return fmt.Errorf("%w: RSA key has %d bits, %s needs at least %d; %s", ErrKeyMismatch, bits, alg, MinRSABits, generateAdvice(alg))
		}
	case jose.ES256, jose.ES384:
		k, ok := pub.(*ecdsa.PublicKey)
		want := elliptic.P256()
		if alg == jose.ES384 {
			want = elliptic.P384()
		}
		if !ok || k.Curve != want {
			return fmt.Errorf("%w: %s needs an EC %s key, got %s%s", ErrKeyMismatch, alg, want.Params().Name, keyKind(pub), mismatchAdvice(alg, pub))
		}
	case jose.EdDSA:
		if _, ok := pub.(ed25519.PublicKey); !ok {
			return fmt.Errorf("%w: EdDSA needs an Ed25519 key, got %s%s", ErrKeyMismatch, keyKind(pub), mismatchAdvice(alg, pub))
		}
	case "":
		return fmt.Errorf("%w: no algorithm given", ErrUnsupportedAlgorithm)
	default:
		return unsupported(alg)
	}
	return nil
}

func unsupported(alg jose.SignatureAlgorithm) error {
	why := ""
	switch {
	case strings.EqualFold(string(alg), "none"):
		why = ": unsigned tokens are never sent"
	case strings.HasPrefix(strings.ToUpper(string(alg)), "HS"):
		why = ": HMAC needs a secret shared with the receiver; SET receivers verify with a public key"
	}
	return fmt.Errorf("%w %q%s (allowed: RS256, PS256, ES256, ES384, EdDSA)", ErrUnsupportedAlgorithm, alg, why)
}

// generateAdvice says how to make a key that fits alg.
func generateAdvice(alg jose.SignatureAlgorithm) string {
	return fmt.Sprintf("create a key that fits with `setrelay keys generate --alg %s` (add --pkcs11 or --kms for a token or KMS)", alg)
}

// mismatchAdvice is the way out of a key that does not fit alg: the
// algorithm the key does sign with, if it has one, or a new key.
func mismatchAdvice(alg jose.SignatureAlgorithm, pub crypto.PublicKey) string {
	if d, err := defaultAlg(pub); err == nil && checkAlg(d, pub) == nil {
		return fmt.Sprintf("; this key signs %s: set alg: %s, or %s", d, d, generateAdvice(alg))
	}
	return "; " + generateAdvice(alg)
}

// keyKind names a key's type for error messages.
func keyKind(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d-bit", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case nil:
		return "no key"
	default:
		return fmt.Sprintf("%T", pub)
	}
}

// defaultAlg picks the algorithm a key most plausibly means when nobody said:
// RS256 for RSA (what GOV.UK requires), the curve's ECDSA algorithm, EdDSA.
func defaultAlg(pub crypto.PublicKey) (jose.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return jose.RS256, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("%w: no supported algorithm for a %s key (RS256 and PS256 take RSA of %d bits or more, ES256 P-256, ES384 P-384, EdDSA Ed25519); %s", ErrKeyMismatch, keyKind(pub), MinRSABits, generateAdvice(jose.ES256))
}

// newKey validates and assembles a Key, defaulting the id to the thumbprint.
func newKey(priv crypto.Signer, id string, alg jose.SignatureAlgorithm) (*Key, error) {
	if alg == "" {
		a, err := defaultAlg(priv.Public())
		if err != nil {
			return nil, err
		}
		alg = a
	}
	if err := checkAlg(alg, priv.Public()); err != nil {
		return nil, err
	}
	if id == "" {
		tp, err := Thumbprint(priv.Public())
		if err != nil {
			return nil, err
		}
		id = tp
	}
	return &Key{ID: id, Alg: alg, priv: priv}, nil
}

// Thumbprint returns the RFC 7638 SHA-256 JWK thumbprint of a public key,
// base64url without padding: the default key id, stable across file formats.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// GenerateKey makes a new key for alg: RSA 2048 for RS256/PS256, P-256 for
// ES256, P-384 for ES384, Ed25519 for EdDSA. An empty id becomes the
// thumbprint.
func GenerateKey(alg jose.SignatureAlgorithm, id string) (*Key, error) {
	var (
		priv crypto.Signer
		err  error
	)
	switch alg {
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, MinRSABits)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, checkAlg(alg, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return newKey(priv, id, alg)
}

// PrivatePEM returns the private key as PKCS#8 ("PRIVATE KEY"), the one PEM
// form every algorithm shares. Write it with mode 0600.
//
// A key id other than the thumbprint is carried in a "kid: ID" line of
// explanatory text before the PEM block, which LoadKey reads back: without
// it, a key generated with a chosen id would come back with its thumbprint
// as kid. Text before "-----BEGIN" is ignored by OpenSSL and every other PEM
// reader (RFC 7468 section 2), unlike PEM headers, which OpenSSL refuses in
// an unencrypted key.
func (k *Key) PrivatePEM() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("signer: empty key")
	}
	if k.remote {
		return nil, fmt.Errorf("key %q is held by an HSM or KMS and cannot be exported", k.ID)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key %q: %w", k.ID, err)
	}
	block := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if tp, err := Thumbprint(k.priv.Public()); err == nil && tp == k.ID {
		return block, nil
	}
	return append([]byte(kidPrefix+k.ID+"\n"), block...), nil
}

// kidPrefix starts the explanatory line that carries a chosen key id in
// front of a PEM private key.
const kidPrefix = "kid: "

// pemKID returns the key id of a "kid: ID" line before the first PEM block.
func pemKID(data []byte) string {
	pre, _, _ := bytes.Cut(data, []byte("-----BEGIN"))
	for _, line := range strings.Split(string(pre), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), kidPrefix); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// PublicPEM returns the public key as SPKI ("PUBLIC KEY"): what the GOV.UK
// receiver operators ask transmitters to send them.
func (k *Key) PublicPEM() ([]byte, error) {
	if k == nil || k.priv == nil {
		return nil, errors.New("signer: empty key")
	}
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		return nil, fmt.Errorf("encode public key %q: %w", k.ID, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// PublicJWK returns the public key as a JWK with kid, alg and use=sig, ready
// for a JWKS document.
func (k *Key) PublicJWK() jose.JSONWebKey {
	if k == nil || k.priv == nil {
		return jose.JSONWebKey{}
	}
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"}
}

// JWKS publishes the public halves of keys, in the order given, so that
// receivers can verify with any key during a rotation.
func JWKS(keys ...*Key) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		if k == nil || k.priv == nil {
			continue
		}
		set.Keys = append(set.Keys, k.PublicJWK())
	}
	return set
}

// LoadKey reads a private key from path: PEM (PKCS#1 "RSA PRIVATE KEY",
// PKCS#8 "PRIVATE KEY", SEC1 "EC PRIVATE KEY") or a private JWK (JSON).
//
// id and alg may be empty. For a JWK, its "kid" and "alg" fill empty
// arguments, and a non-empty argument that disagrees with the JWK is an error
// (two sources of truth for a key id is how receivers end up unable to find
// the key). A PEM block may name its algorithm with an "Alg" header. Without
// either, the algorithm defaults from the key type (RSA→RS256, P-256→ES256,
// P-384→ES384, Ed25519→EdDSA) and the id to the RFC 7638 thumbprint.
//
// A key file readable by group or others is refused with an error wrapping
// ErrKeyPermissions, as OpenSSH refuses such identity files: anybody who
// can read it can sign SETs in the organisation's name. InsecurePermissions
// loads it anyway, with a warning in Key.Warnings. Errors name the path and
// the problem, never key bytes.
func LoadKey(path, id string, alg jose.SignatureAlgorithm, opts ...LoadOption) (*Key, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	var warnings []string
	// Windows reports synthetic permission bits, so the check would only
	// cry wolf there.
	if fi, err := os.Stat(path); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		if !o.insecurePermissions {
			return nil, fmt.Errorf("%w: %s has mode %#o, so any local user who can read it can sign SETs as you; run chmod 600 %s (for a mount whose mode you cannot change, set the key's insecure_permissions: true or pass --insecure-key-permissions)",
				ErrKeyPermissions, path, fi.Mode().Perm(), path)
		}
		warnings = append(warnings, fmt.Sprintf("private key file %s has mode %#o: it is readable by group or others (allowed by insecure_permissions); use chmod 600", path, fi.Mode().Perm()))
	}
	var k *Key
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '{' {
		k, err = parseJWK(trimmed, id, alg)
	} else {
		k, err = parsePEM(data, id, alg)
	}
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	k.Warnings = warnings
	return k, nil
}

// ErrKeyPermissions is wrapped when a private key file is readable by group
// or others and InsecurePermissions was not given.
var ErrKeyPermissions = errors.New("private key file is readable by group or others")

// LoadOption changes how LoadKey treats a key file.
type LoadOption func(*loadOptions)

type loadOptions struct{ insecurePermissions bool }

// InsecurePermissions lets LoadKey accept a key file readable by group or
// others (with a warning), for mounts whose mode the operator cannot set,
// such as a Kubernetes secret with defaultMode 0644.
func InsecurePermissions() LoadOption {
	return func(o *loadOptions) { o.insecurePermissions = true }
}

// parsePEM finds the first private key block, skipping blocks such as
// "EC PARAMETERS" that `openssl ecparam -genkey` writes in front of the key.
func parsePEM(data []byte, id string, alg jose.SignatureAlgorithm) (*Key, error) {
	if kid := pemKID(data); kid != "" {
		// Two sources of truth for a key id is how receivers end up unable
		// to find the key: a disagreement is an error, as for a JWK.
		if id != "" && id != kid {
			return nil, fmt.Errorf("key id %q given but the file says kid: %s; use the same id in both (keys[].id or --kid), or remove the kid line to use %q", id, kid, id)
		}
		id = kid
	}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (want RSA PRIVATE KEY, PRIVATE KEY or EC PRIVATE KEY, or a JWK)")
		}
		var (
			parsed any
			err    error
		)
		switch block.Type {
		case "RSA PRIVATE KEY":
			parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PRIVATE KEY":
			parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			parsed, err = x509.ParseECPrivateKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PEM private keys are not supported; decrypt it (openssl pkcs8 -in key.pem -out plain.pem) and protect the file with mode 0600")
		case "OPENSSH PRIVATE KEY":
			return nil, errors.New("OpenSSH key files are not supported; convert a copy with ssh-keygen -p -m PKCS8 -f <copy>")
		case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
			return nil, fmt.Errorf("found a %s, need the private key", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", block.Type, err)
		}
		priv, ok := parsed.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%s holds a %T, not a signing key", block.Type, parsed)
		}
		if h := jose.SignatureAlgorithm(block.Headers["Alg"]); h != "" {
			if alg != "" && alg != h {
				return nil, fmt.Errorf("%w: algorithm %s given but the PEM says %s", ErrKeyMismatch, alg, h)
			}
			alg = h
		}
		return newKey(priv, id, alg)
	}
}

func parseJWK(data []byte, id string, alg jose.SignatureAlgorithm) (*Key, error) {
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("parse JWK: %w", err)
	}
	if _, sym := jwk.Key.([]byte); sym {
		return nil, fmt.Errorf("%w: the JWK is a symmetric (oct) key; HMAC is not allowed for SETs", ErrUnsupportedAlgorithm)
	}
	if jwk.IsPublic() {
		return nil, errors.New("the JWK is a public key, need the private key (with d)")
	}
	if jwk.Use != "" && jwk.Use != "sig" {
		return nil, fmt.Errorf("the JWK has use %q, need sig", jwk.Use)
	}
	if a := jose.SignatureAlgorithm(jwk.Algorithm); a != "" {
		if alg != "" && alg != a {
			return nil, fmt.Errorf("%w: algorithm %s given but the JWK says %s", ErrKeyMismatch, alg, a)
		}
		alg = a
	}
	if jwk.KeyID != "" {
		if id != "" && id != jwk.KeyID {
			return nil, fmt.Errorf("key id %q given but the JWK says %q", id, jwk.KeyID)
		}
		id = jwk.KeyID
	}
	priv, ok := jwk.Key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the JWK holds a %T, not a signing key", jwk.Key)
	}
	return newKey(priv, id, alg)
}
