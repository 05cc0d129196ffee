package signer

import (
	"bytes"
	"testing"
	"testing/cryptotest"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// goJoseCompact is what go-jose itself makes of payload: Signer.Sign then
// CompactSerialize, with the header options setrelay used before it
// encoded the header once (typ, and kid when the key is a JWK with one).
func goJoseCompact(t *testing.T, alg jose.SignatureAlgorithm, key any, payload []byte) string {
	t.Helper()
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType(MediaType))
	if err != nil {
		t.Fatal(err)
	}
	obj, err := js.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pubJWK answers Public() with a fixed JWK, as a KMS adapter does.
type pubJWK struct {
	jose.OpaqueSigner
	pub *jose.JSONWebKey
}

func (p pubJWK) Public() *jose.JSONWebKey { return p.pub }

// TestCompactMatchesGoJose proves that the header encoded once plus the
// signing input assembled by hand give exactly what go-jose's Sign and
// CompactSerialize give, byte for byte, for every algorithm, with and
// without kid, for file keys, for HSM/KMS keys (NewRemoteKey, signing
// through the OpaqueSigner seam) and for NewOpaque. ECDSA and PSS are
// randomised, so both sides draw the same deterministic randomness
// (cryptotest.SetGlobalRandom reset to one seed before each signature).
func TestCompactMatchesGoJose(t *testing.T) {
	payloads := [][]byte{
		[]byte(`{"iss":"https://idp.example.com/","iat":1508184845,"jti":"756E69717565206964656E746966696572","events":{}}`),
		{},
		bytes.Repeat([]byte("é<>&\u2028"), 97), // escapes, and every length mod 3
		bytes.Repeat([]byte("x"), 1001),
	}
	for _, alg := range Algorithms() {
		k := keyFor(t, alg)
		for _, kid := range []string{k.ID, "", `kid with "quotes" & <html> \ é`} {
			kk := *k
			if kid != "" {
				kk.ID = kid
			}
			local, err := New(&kk)
			if err != nil {
				t.Fatal(err)
			}
			withKID := kid != ""
			var joseKey any = kk.priv
			if withKID {
				joseKey = jose.JSONWebKey{Key: kk.priv, KeyID: kid, Algorithm: string(alg)}
			}
			kinds := []struct {
				name string
				s    *Signer
				key  any // what go-jose is given
			}{{"file", local, joseKey}}
			if _, ok := SignerOpts(alg); ok == nil {
				rk, err := NewRemoteKey(&device{key: kk.priv}, kk.ID, alg, nil)
				if err != nil {
					t.Fatal(err)
				}
				remote, err := New(rk)
				if err != nil {
					t.Fatal(err)
				}
				pub := &jose.JSONWebKey{Key: kk.Public(), Algorithm: string(alg), Use: "sig"}
				if withKID {
					pub.KeyID = kid
				}
				kinds = append(kinds, struct {
					name string
					s    *Signer
					key  any
				}{"remote", remote, pubJWK{remoteOpaque{priv: rk.priv, alg: alg}, pub}})
			}
			if alg != jose.PS256 { // cryptosigner's PSS salt is not RFC 7518's
				pub := &jose.JSONWebKey{Key: kk.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}
				op, err := NewOpaque(pubJWK{cryptosigner.Opaque(kk.priv), pub})
				if err != nil {
					t.Fatal(err)
				}
				if withKID {
					kinds = append(kinds, struct {
						name string
						s    *Signer
						key  any
					}{"opaque", op, pubJWK{cryptosigner.Opaque(kk.priv), pub}})
				}
			}
			for _, kind := range kinds {
				for i, p := range payloads {
					cryptotest.SetGlobalRandom(t, uint64(i+1))
					want := goJoseCompact(t, alg, kind.key, p)
					cryptotest.SetGlobalRandom(t, uint64(i+1))
					got, err := kind.s.Sign(p, withKID)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Errorf("%s %s kid=%q payload %d:\n got %s\nwant %s", alg, kind.name, kid, i, got, want)
					}
					// And the result verifies, so the comparison is not
					// between two equally wrong outputs.
					if string(verify(t, got, alg, kk.Public())) != string(p) {
						t.Errorf("%s %s: payload does not round-trip", alg, kind.name)
					}
				}
			}
		}
	}
}

// TestCompactRandomisedSignaturesDiffer guards the test above: without the
// shared seed, ECDSA and PSS signatures of one payload differ, so equality
// there comes from the same signing operation, not from a constant.
func TestCompactRandomisedSignaturesDiffer(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.PS256} {
		s, err := New(keyFor(t, alg))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := s.Sign([]byte(`{}`), true)
		b, _ := s.Sign([]byte(`{}`), true)
		if a == b {
			t.Errorf("%s: two signatures are identical without a fixed seed", alg)
		}
	}
}

// TestSignatureSize checks the capacity hint against real signatures, so a
// wrong hint shows as a test failure rather than as a silent reallocation.
func TestSignatureSize(t *testing.T) {
	for _, alg := range Algorithms() {
		k := keyFor(t, alg)
		s, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.SignBytes([]byte(`{"a":1}`), true)
		if err != nil {
			t.Fatal(err)
		}
		if cap(out) != len(out) {
			t.Errorf("%s: compact JWS has len %d, cap %d: the size hint is off", alg, len(out), cap(out))
		}
	}
}

// BenchmarkSign compares setrelay's Sign with go-jose's Sign and
// CompactSerialize of the same ~500-byte claims, with allocations.
//
//	go test -run '^$' -bench Sign -benchmem ./signer/
func BenchmarkSign(b *testing.B) {
	payload := bytes.Repeat([]byte("c"), 520)
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA} {
		k := keyFor(b, alg)
		s, err := New(k)
		if err != nil {
			b.Fatal(err)
		}
		js, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.ID, Algorithm: string(alg)}},
			(&jose.SignerOptions{}).WithType(MediaType))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(string(alg)+"/setrelay", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.SignBytes(payload, true); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/go-jose", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				obj, err := js.Sign(payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := obj.CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
