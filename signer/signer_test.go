package signer

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/cryptosigner"
)

// header decodes the protected header of a compact JWS by hand, so the test
// sees exactly the members that were sent.
func header(t *testing.T, compact string) map[string]any {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func verify(t *testing.T, compact string, alg jose.SignatureAlgorithm, pub crypto.PublicKey) []byte {
	t.Helper()
	jws, err := jose.ParseSignedCompact(compact, []jose.SignatureAlgorithm{alg})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return payload
}

func checkHeader(t *testing.T, h map[string]any, alg jose.SignatureAlgorithm, kid string) {
	t.Helper()
	want := map[string]any{"alg": string(alg), "typ": "secevent+jwt"}
	if kid != "" {
		want["kid"] = kid
	}
	if len(h) != len(want) {
		t.Errorf("header = %v, want exactly %v", h, want)
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %v, want %v", k, h[k], v)
		}
	}
}

func TestSign(t *testing.T) {
	payload := []byte(`{"iss":"https://idp.example.com/","iat":1508184845}`)
	for _, alg := range Algorithms() {
		for _, withKID := range []bool{true, false} {
			name := string(alg) + "/kid"
			if !withKID {
				name = string(alg) + "/no-kid"
			}
			t.Run(name, func(t *testing.T) {
				k := keyFor(t, alg)
				s, err := New(k)
				if err != nil {
					t.Fatal(err)
				}
				if s.Algorithm() != alg || s.KeyID() != k.ID {
					t.Errorf("Signer reports %s %q", s.Algorithm(), s.KeyID())
				}
				out, err := s.Sign(payload, withKID)
				if err != nil {
					t.Fatal(err)
				}
				wantKID := ""
				if withKID {
					wantKID = k.ID
				}
				checkHeader(t, header(t, out), alg, wantKID)
				if got := verify(t, out, alg, k.Public()); string(got) != string(payload) {
					t.Errorf("payload = %s, want %s", got, payload)
				}
			})
		}
	}
}

// TestSignConcurrent shares one Signer between goroutines, as the worker
// pool does; run with -race to check it.
func TestSignConcurrent(t *testing.T) {
	k := keyFor(t, jose.ES256)
	s, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8*20)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				out, err := s.Sign([]byte(`{"n":1}`), (g+i)%2 == 0)
				if err != nil {
					errs <- err
					return
				}
				jws, err := jose.ParseSignedCompact(out, []jose.SignatureAlgorithm{jose.ES256})
				if err == nil {
					_, err = jws.Verify(k.Public())
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestNewRejects(t *testing.T) {
	if _, err := New(nil); err == nil {
		t.Error("New(nil) accepted")
	}
	if _, err := New(&Key{ID: "x", Alg: jose.RS256}); err == nil {
		t.Error("New accepted a key without key material")
	}
	k := keyFor(t, jose.ES256)
	k.Alg = jose.HS256
	if _, err := New(k); err == nil {
		t.Error("New accepted HS256")
	}
	k = keyFor(t, jose.ES256)
	k.Alg = jose.RS256
	if _, err := New(k); err == nil {
		t.Error("New accepted an EC key for RS256")
	}
	k = keyFor(t, jose.ES256)
	k.ID = ""
	if _, err := New(k); err == nil {
		t.Error("New accepted a key without an id")
	}
}

// opaqueWithAlg is a KMS stand-in that also names its algorithm in its
// public JWK, as a KMS adapter would for an RSA key usable for several.
type opaqueWithAlg struct {
	jose.OpaqueSigner
	pub *jose.JSONWebKey
}

func (o opaqueWithAlg) Public() *jose.JSONWebKey { return o.pub }

func TestNewOpaque(t *testing.T) {
	for _, tc := range []struct {
		name    string
		key     *Key
		mk      func(k *Key) jose.OpaqueSigner
		wantAlg jose.SignatureAlgorithm
		wantKID func(k *Key) string
	}{
		{
			name:    "ES256 from Algs, kid from thumbprint",
			key:     keyFor(t, jose.ES256),
			mk:      func(k *Key) jose.OpaqueSigner { return cryptosigner.Opaque(k.priv) },
			wantAlg: jose.ES256,
			wantKID: func(k *Key) string { return k.ID }, // generated ids are thumbprints
		},
		{
			name: "PS256 and kid from the public JWK",
			key:  keyFor(t, jose.PS256),
			mk: func(k *Key) jose.OpaqueSigner {
				return opaqueWithAlg{cryptosigner.Opaque(k.priv), &jose.JSONWebKey{Key: k.Public(), KeyID: "kms-1", Algorithm: "PS256"}}
			},
			wantAlg: jose.PS256,
			wantKID: func(*Key) string { return "kms-1" },
		},
		{
			name:    "RSA defaults to RS256, the first allowed of Algs",
			key:     keyFor(t, jose.RS256),
			mk:      func(k *Key) jose.OpaqueSigner { return cryptosigner.Opaque(k.priv) },
			wantAlg: jose.RS256,
			wantKID: func(k *Key) string { return k.ID },
		},
		{
			name:    "EdDSA",
			key:     keyFor(t, jose.EdDSA),
			mk:      func(k *Key) jose.OpaqueSigner { return cryptosigner.Opaque(k.priv) },
			wantAlg: jose.EdDSA,
			wantKID: func(k *Key) string { return k.ID },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewOpaque(tc.mk(tc.key))
			if err != nil {
				t.Fatal(err)
			}
			kid := tc.wantKID(tc.key)
			if s.Algorithm() != tc.wantAlg || s.KeyID() != kid {
				t.Fatalf("NewOpaque = %s %q, want %s %q", s.Algorithm(), s.KeyID(), tc.wantAlg, kid)
			}
			for _, withKID := range []bool{true, false} {
				out, err := s.Sign([]byte(`{"a":1}`), withKID)
				if err != nil {
					t.Fatal(err)
				}
				want := ""
				if withKID {
					want = kid
				}
				checkHeader(t, header(t, out), tc.wantAlg, want)
				verify(t, out, tc.wantAlg, tc.key.Public())
			}
		})
	}

	k := keyFor(t, jose.RS256)
	bad := opaqueWithAlg{cryptosigner.Opaque(k.priv), &jose.JSONWebKey{Key: k.Public(), Algorithm: "RS512"}}
	if _, err := NewOpaque(bad); err == nil {
		t.Error("NewOpaque accepted RS512")
	}
	if _, err := NewOpaque(nil); err == nil {
		t.Error("NewOpaque(nil) accepted")
	}
}
