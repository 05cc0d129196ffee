package keysource

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
)

// verifyPSSStrict verifies a PS256 compact JWS with the 32-byte salt RFC
// 7518 section 3.5 fixes ("The size of the salt value is the same size as
// the hash function output"): Go's rsa.VerifyPSS with an explicit
// SaltLength refuses any other, where most JOSE verifiers accept any.
func verifyPSSStrict(t *testing.T, compact string, pub crypto.PublicKey) error {
	t.Helper()
	i := strings.LastIndexByte(compact, '.')
	sig, err := base64.RawURLEncoding.DecodeString(compact[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(compact[:i]))
	return rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256})
}

func signPS256(t *testing.T, kc config.Key) (string, crypto.PublicKey) {
	t.Helper()
	k, err := Open(context.Background(), kc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	sg, err := Signer(k, kc, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	compact, err := sg.Sign([]byte(`{"jti":"pss"}`), true)
	if err != nil {
		t.Fatal(err)
	}
	return compact, k.Public()
}

// TestKMSPS256SignsValidPSS: a PS256 key in KMS signs through
// RSASSA_PSS_SHA_256 and the JWS is a valid RSASSA-PSS SHA-256 signature
// of the signing input. AWS documents that algorithm as PSS "with a 256-bit
// salt", hash-sized as RFC 7518 section 3.5 requires; the local-kms
// emulator signs with Go's default, the longest salt, so the salt length
// is only logged here, not asserted: against the emulator it would fail
// for the emulator's sake.
func TestKMSPS256SignsValidPSS(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	compact, pub := signPS256(t, kmsKey(t, lk, lk.URL, jose.PS256))
	if err := rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digestOf(compact), sigOf(t, compact), nil); err != nil {
		t.Fatalf("the KMS PS256 signature does not verify at all: %v", err)
	}
	if err := verifyPSSStrict(t, compact, pub); err != nil {
		t.Logf("local-kms signs PSS with a salt other than 32 bytes (an emulator deviation; AWS KMS uses 32): %v", err)
	}
}

func digestOf(compact string) []byte {
	d := sha256.Sum256([]byte(compact[:strings.LastIndexByte(compact, '.')]))
	return d[:]
}

func sigOf(t *testing.T, compact string) []byte {
	sig, err := base64.RawURLEncoding.DecodeString(compact[strings.LastIndexByte(compact, '.')+1:])
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
