package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
	josejson "github.com/go-jose/go-jose/v4/json"
)

// compact produces the compact JWS of one key and one header choice (with
// or without kid).
//
// go-jose's Signer.Sign rebuilds and re-marshals the protected header by
// reflection for every SET, although it never changes for a key, then
// serialises the result a second time in CompactSerialize. compact encodes
// the header once, at construction, with go-jose's own JSON encoder and the
// same header map go-jose builds, and assembles the signing input
// (BASE64URL(header) "." BASE64URL(payload)) in one buffer. The signature is
// still made by go-jose code through its OpaqueSigner seam, the same call
// go-jose makes for a KMS key: cryptosigner for a file key, the key source's
// adapter (remoteOpaque) for an HSM or KMS key, the caller's OpaqueSigner
// for NewOpaque. TestCompactMatchesGoJose proves the output byte-identical to
// go-jose's Sign and CompactSerialize for every algorithm and key kind.
type compact struct {
	alg jose.SignatureAlgorithm
	// prefix is BASE64URL(protected header) followed by the dot.
	prefix []byte
	// sigLen is the signature's size in bytes, to size the output once.
	sigLen int
	signer jose.OpaqueSigner
}

// newCompact encodes the protected header {"alg", "kid" unless empty,
// "typ"} as go-jose's genericSigner does: a map marshalled by go-jose's
// json package, so keys come sorted and strings escaped the same way.
func newCompact(alg jose.SignatureAlgorithm, kid string, s jose.OpaqueSigner, pub crypto.PublicKey) (*compact, error) {
	h := map[jose.HeaderKey]any{"alg": string(alg), "typ": jose.ContentType(MediaType)}
	if kid != "" {
		h["kid"] = kid
	}
	raw, err := josejson.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("encode JOSE header: %w", err)
	}
	enc := base64.RawURLEncoding
	prefix := make([]byte, 0, enc.EncodedLen(len(raw))+1)
	prefix = enc.AppendEncode(prefix, raw)
	prefix = append(prefix, '.')
	return &compact{alg: alg, prefix: prefix, sigLen: signatureSize(pub), signer: s}, nil
}

// signatureSize is the JWS signature's length for a public key: R||S for
// ECDSA (RFC 7518 section 3.4), the modulus for RSA, 64 for Ed25519. It is
// only a capacity hint.
func signatureSize(pub crypto.PublicKey) int {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return 2 * ((k.Curve.Params().BitSize + 7) / 8)
	case *rsa.PublicKey:
		return k.Size()
	case ed25519.PublicKey:
		return ed25519.SignatureSize
	}
	return 512
}

// sign returns the compact JWS of payload in a new slice the caller owns.
func (c *compact) sign(payload []byte) ([]byte, error) {
	enc := base64.RawURLEncoding
	input := len(c.prefix) + enc.EncodedLen(len(payload))
	out := make([]byte, 0, input+1+enc.EncodedLen(c.sigLen))
	out = append(out, c.prefix...)
	out = enc.AppendEncode(out, payload)
	sig, err := c.signer.SignPayload(out, c.alg)
	if err != nil {
		return nil, err
	}
	out = append(out, '.')
	return enc.AppendEncode(out, sig), nil
}

// localOpaque is the OpaqueSigner a file key signs through: go-jose's
// cryptosigner, which hashes and encodes exactly as go-jose's built-in
// signers do, except for PS256, where cryptosigner asks for the longest
// salt rather than the hash-sized one RFC 7518 section 3.5 and go-jose use.
// PS256 goes through remoteOpaque, whose options are RFC 7518's.
func localOpaque(k *Key, pub *jose.JSONWebKey) jose.OpaqueSigner {
	if k.Alg == jose.PS256 {
		return remoteOpaque{priv: k.priv, alg: k.Alg, pub: pub}
	}
	return cryptosigner.Opaque(k.priv)
}
