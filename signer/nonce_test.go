package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// rfc6979Signer signs deterministically (RFC 6979): crypto/ecdsa does so
// when Sign is given no random source.
type rfc6979Signer struct{ *ecdsa.PrivateKey }

func (s rfc6979Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return s.PrivateKey.Sign(nil, digest, opts)
}

// BenchmarkES256SigningOptions measures the ES256 signing choices that
// were weighed for issue 14 and not taken (README, Performance), on a
// 700-byte signing input:
//
//   - hedged: what setrelay does, go-jose's cryptosigner over crypto/ecdsa's
//     default hedged nonce (random and deterministic, SHA-512 HMAC-DRBG);
//
//   - rfc6979: the same call with a deterministic nonce, cheaper but
//     without the randomness that guards against fault attacks;
//
//   - ecdsa.Sign: crypto/ecdsa's r, s padded by hand, without
//     cryptosigner's reflective DER parse, so go-jose no longer makes
//     the signature.
//
//     go test -run '^$' -bench ES256SigningOptions -benchmem -count 4 ./signer/
func BenchmarkES256SigningOptions(b *testing.B) {
	payload := make([]byte, 700)
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		s    jose.OpaqueSigner
	}{{"hedged", cryptosigner.Opaque(k)}, {"rfc6979", cryptosigner.Opaque(rfc6979Signer{k})}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.s.SignPayload(payload, jose.ES256); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("ecdsa.Sign", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h := sha256.Sum256(payload)
			r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
			if err != nil {
				b.Fatal(err)
			}
			out := make([]byte, 64)
			r.FillBytes(out[:32])
			s.FillBytes(out[32:])
		}
	})
}
