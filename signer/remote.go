package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	jose "github.com/go-jose/go-jose/v4"
)

// NewRemoteKey makes a Key of a private key that never leaves its HSM or
// KMS. priv is the key source's crypto.Signer: Public answers from a public
// key read once when the source was opened, and Sign sends a digest to the
// device, returning what crypto.Signer promises (PKCS#1 v1.5 or PSS bytes
// for RSA, an ASN.1 DER signature for ECDSA). Each source classifies its
// failures with ErrTransient and ErrKeyUnusable.
//
// alg is checked against the key's real type here, so a configuration that
// asks an EC key for RS256 fails at start-up. An empty alg is derived from
// the key type as LoadKey does; an empty id becomes the thumbprint. closer,
// if not nil, is closed by Key.Close (a PKCS#11 module's sessions).
func NewRemoteKey(priv crypto.Signer, id string, alg jose.SignatureAlgorithm, closer io.Closer) (*Key, error) {
	if priv == nil || priv.Public() == nil {
		return nil, errors.New("signer: remote key has no public key")
	}
	k, err := newKey(priv, id, alg)
	if err != nil {
		return nil, err
	}
	k.remote = true
	k.closer = closer
	return k, nil
}

// Remote reports whether the private half is held by an HSM or KMS. Such a
// key has no PrivatePEM.
func (k *Key) Remote() bool { return k != nil && k.remote }

// Close releases what a remote key holds open (PKCS#11 sessions). It is a
// no-op for file keys and safe to call more than once.
func (k *Key) Close() error {
	if k == nil || k.closer == nil {
		return nil
	}
	c := k.closer
	k.closer = nil
	return c.Close()
}

// remoteOpaque adapts a crypto.Signer held by a device to go-jose's
// OpaqueSigner. go-jose hands SignPayload the JWS signing input unhashed
// and puts whatever it returns into the JWS as the signature, so hashing
// and the RFC 7518 encodings are this adapter's job: ECDSA signatures must
// be the fixed-size R||S concatenation (section 3.4), not the DER that
// crypto.Signer, PKCS#11 tokens (via crypto11) and KMS return.
type remoteOpaque struct {
	priv crypto.Signer
	alg  jose.SignatureAlgorithm
	pub  *jose.JSONWebKey
}

func (r remoteOpaque) Public() *jose.JSONWebKey { return r.pub }

func (r remoteOpaque) Algs() []jose.SignatureAlgorithm { return []jose.SignatureAlgorithm{r.alg} }

func (r remoteOpaque) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if alg != r.alg {
		return nil, fmt.Errorf("%w: key signs %s, asked for %s", ErrKeyMismatch, r.alg, alg)
	}
	opts, err := SignerOpts(alg)
	if err != nil {
		return nil, err
	}
	h := opts.HashFunc().New()
	h.Write(payload)
	sig, err := r.priv.Sign(rand.Reader, h.Sum(nil), opts)
	if err != nil {
		return nil, err
	}
	if pub, ok := r.priv.Public().(*ecdsa.PublicKey); ok {
		out, err := ecdsaDERToJOSE(sig, (pub.Curve.Params().BitSize+7)/8)
		if err != nil {
			// The device's answer, not the SET, is at fault: block the
			// key's receivers rather than count it against the intent.
			return nil, fmt.Errorf("%w: %w", ErrKeyUnusable, err)
		}
		return out, nil
	}
	return sig, nil
}

// SignerOpts are the crypto.SignerOpts a remote key is asked to sign a JWS
// algorithm's digest with: the hash, and for PS256 a salt as long as the
// hash, as RFC 7518 section 3.5 requires (and KMS uses).
func SignerOpts(alg jose.SignatureAlgorithm) (crypto.SignerOpts, error) {
	switch alg {
	case jose.RS256, jose.ES256:
		return crypto.SHA256, nil
	case jose.ES384:
		return crypto.SHA384, nil
	case jose.PS256:
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}, nil
	default:
		return nil, fmt.Errorf("%w: %s cannot be signed by a remote key (RS256, PS256, ES256, ES384 can)", ErrUnsupportedAlgorithm, alg)
	}
}

// ecdsaDERToJOSE turns an ASN.1 DER ECDSA signature into the JWS form: R
// and S, each left-padded to the curve's byte size, concatenated.
func ecdsaDERToJOSE(der []byte, size int) ([]byte, error) {
	var sig struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(der, &sig)
	if err != nil || len(rest) != 0 || sig.R == nil || sig.S == nil {
		return nil, errors.New("signer: the device returned an ECDSA signature that is not ASN.1 DER")
	}
	if sig.R.Sign() <= 0 || sig.S.Sign() <= 0 || sig.R.BitLen() > size*8 || sig.S.BitLen() > size*8 {
		return nil, errors.New("signer: the device returned an ECDSA signature out of range for the curve")
	}
	out := make([]byte, 2*size)
	sig.R.FillBytes(out[:size])
	sig.S.FillBytes(out[size:])
	return out, nil
}
