package signer

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// VerifyPSSStrict verifies a PS256 compact JWS with the salt length RFC
// 7518 section 3.5 fixes: "The size of the salt value is the same size as
// the hash function output", 32 bytes for SHA-256. Go's rsa.VerifyPSS
// with an explicit SaltLength refuses any other, unlike the verifiers of
// most JOSE libraries, which accept any salt (PSSSaltLengthAuto).
func verifyPSSStrict(t *testing.T, compact string, pub *rsa.PublicKey) error {
	t.Helper()
	i := strings.LastIndexByte(compact, '.')
	sig, err := base64.RawURLEncoding.DecodeString(compact[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(compact[:i]))
	return rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256})
}

// TestPS256SaltIsHashSized: a PS256 SET from a file key and from a remote
// key (through the device seam an HSM or KMS uses) carries a 32-byte
// salt. The strict check is shown able to fail on a signature with
// Go's default (longest) salt.
func TestPS256SaltIsHashSized(t *testing.T) {
	file := keyFor(t, jose.PS256)
	rk := file.priv.(*rsa.PrivateKey)
	remote, err := NewRemoteKey(&device{key: rk}, "dev", jose.PS256, nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]*Key{"file": file, "remote": remote} {
		sg, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		compact, err := sg.Sign([]byte(`{"jti":"pss"}`), true)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyPSSStrict(t, compact, &rk.PublicKey); err != nil {
			t.Errorf("%s key: PS256 signature without a 32-byte salt: %v", name, err)
		}
	}

	// The check can fail: the same input signed with the longest salt.
	input := "eyJhbGciOiJQUzI1NiJ9.e30"
	digest := sha256.Sum256([]byte(input))
	long, err := rsa.SignPSS(rand.Reader, rk, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	if err != nil {
		t.Fatal(err)
	}
	if verifyPSSStrict(t, input+"."+base64.RawURLEncoding.EncodeToString(long), &rk.PublicKey) == nil {
		t.Error("the strict check accepted a longest-salt signature")
	}
}
