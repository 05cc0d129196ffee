package signer

import (
	"crypto/ecdsa"
	"encoding/base64"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// TestECDSASignatureIsFixedLengthRS: RFC 7518 section 3.4 makes the JWS
// ECDSA signature R and S, each "a 32-octet sequence" for ES256 (48 for
// ES384), concatenated, so a short R or S (1 signature in 128 has one)
// must be left-padded, not sent as 63 bytes nor as DER. Checked on the
// bytes, for file and remote keys, over enough signatures to meet short
// values, and each verified with golang-jwt, which refuses any other
// length.
func TestECDSASignatureIsFixedLengthRS(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384} {
		file := keyFor(t, alg)
		remote, err := NewRemoteKey(&device{key: file.priv}, "dev", alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := 64
		if alg == jose.ES384 {
			want = 96
		}
		for name, k := range map[string]*Key{"file": file, "remote": remote} {
			sg, err := New(k)
			if err != nil {
				t.Fatal(err)
			}
			short := 0
			for range 400 {
				compact, err := sg.Sign([]byte(`{"jti":"rs"}`), false)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := base64.RawURLEncoding.DecodeString(compact[strings.LastIndexByte(compact, '.')+1:])
				if err != nil || len(sig) != want {
					t.Fatalf("%s %s: signature of %d bytes (%v), want %d", name, alg, len(sig), err, want)
				}
				if sig[0] == 0 || sig[want/2] == 0 {
					short++
				}
				if _, err := jwt.Parse(compact, func(*jwt.Token) (any, error) { return file.Public().(*ecdsa.PublicKey), nil }, jwt.WithValidMethods([]string{string(alg)})); err != nil {
					t.Fatalf("%s %s: golang-jwt: %v", name, alg, err)
				}
			}
			t.Logf("%s %s: %d of 400 signatures had a zero-padded R or S", name, alg, short)
		}
	}
}
