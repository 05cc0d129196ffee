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
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// testKeys caches one generated key per algorithm: RSA generation is slow on
// the shared 2-core machine and the tests only need real, valid keys.
var (
	testKeysOnce sync.Once
	testKeys     map[jose.SignatureAlgorithm]*Key
)

func keyFor(t testing.TB, alg jose.SignatureAlgorithm) *Key {
	t.Helper()
	testKeysOnce.Do(func() {
		testKeys = map[jose.SignatureAlgorithm]*Key{}
		for _, a := range Algorithms() {
			k, err := GenerateKey(a, "")
			if err != nil {
				panic(err)
			}
			testKeys[a] = k
		}
	})
	k := *testKeys[alg]
	return &k
}

func writeFile(t *testing.T, name string, data []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask may have narrowed it
		t.Fatal(err)
	}
	return p
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustPKCS8(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func mustSEC1(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pemOf("EC PRIVATE KEY", der)
}

func mustJWK(t *testing.T, jwk jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jwk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadKeyFormats(t *testing.T) {
	rsaKey := keyFor(t, jose.RS256).priv.(*rsa.PrivateKey)
	p256 := keyFor(t, jose.ES256).priv.(*ecdsa.PrivateKey)
	p384 := keyFor(t, jose.ES384).priv.(*ecdsa.PrivateKey)
	edKey := keyFor(t, jose.EdDSA).priv.(ed25519.PrivateKey)
	ecParams := []byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n")
	algPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Alg": "PS256"}, Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})

	tests := []struct {
		name    string
		data    []byte
		id      string
		alg     jose.SignatureAlgorithm
		wantAlg jose.SignatureAlgorithm
		wantID  string // "" means the thumbprint
		pub     crypto.PublicKey
	}{
		{"PKCS#1 RSA defaults to RS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "", "", jose.RS256, "", &rsaKey.PublicKey},
		{"PKCS#1 RSA as PS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), "k1", jose.PS256, jose.PS256, "k1", &rsaKey.PublicKey},
		{"PEM Alg header", algPEM, "", "", jose.PS256, "", &rsaKey.PublicKey},
		{"PKCS#8 RSA", mustPKCS8(t, rsaKey), "", "", jose.RS256, "", &rsaKey.PublicKey},
		{"PKCS#8 P-256", mustPKCS8(t, p256), "", "", jose.ES256, "", &p256.PublicKey},
		{"PKCS#8 P-384", mustPKCS8(t, p384), "", "", jose.ES384, "", &p384.PublicKey},
		{"PKCS#8 Ed25519", mustPKCS8(t, edKey), "ed", "", jose.EdDSA, "ed", edKey.Public()},
		{"SEC1 P-256", mustSEC1(t, p256), "", jose.ES256, jose.ES256, "", &p256.PublicKey},
		{"SEC1 P-384 after EC PARAMETERS", append(append([]byte{}, ecParams...), mustSEC1(t, p384)...), "", "", jose.ES384, "", &p384.PublicKey},
		{"JWK RSA with kid and alg", mustJWK(t, jose.JSONWebKey{Key: rsaKey, KeyID: "jwk-rsa", Algorithm: "PS256", Use: "sig"}), "", "", jose.PS256, "jwk-rsa", &rsaKey.PublicKey},
		{"JWK RSA args agree", mustJWK(t, jose.JSONWebKey{Key: rsaKey, KeyID: "jwk-rsa", Algorithm: "RS256"}), "jwk-rsa", jose.RS256, jose.RS256, "jwk-rsa", &rsaKey.PublicKey},
		{"JWK EC without kid", mustJWK(t, jose.JSONWebKey{Key: p256}), "", "", jose.ES256, "", &p256.PublicKey},
		{"JWK Ed25519 id from args", mustJWK(t, jose.JSONWebKey{Key: edKey}), "mine", jose.EdDSA, jose.EdDSA, "mine", edKey.Public()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadKey(writeFile(t, "key", tc.data, 0o600), tc.id, tc.alg)
			if err != nil {
				t.Fatalf("LoadKey: %v", err)
			}
			if k.Alg != tc.wantAlg {
				t.Errorf("Alg = %s, want %s", k.Alg, tc.wantAlg)
			}
			wantID := tc.wantID
			if wantID == "" {
				if wantID, err = Thumbprint(tc.pub); err != nil {
					t.Fatal(err)
				}
			}
			if k.ID != wantID {
				t.Errorf("ID = %q, want %q", k.ID, wantID)
			}
			if eq, ok := k.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(tc.pub) {
				t.Errorf("public key differs from the one written")
			}
			if len(k.Warnings) != 0 {
				t.Errorf("unexpected warnings for a 0600 file: %v", k.Warnings)
			}
		})
	}
}

// TestThumbprintKnownAnswer pins the default kid to RFC 7638 section 3.1's
// worked example, so the default key id is the standard one and not merely
// stable.
func TestThumbprintKnownAnswer(t *testing.T) {
	const rfcKey = `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB"}`
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON([]byte(rfcKey)); err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(jwk.Key)
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("Thumbprint = %s, want %s", got, want)
	}
}

func TestLoadKeyRejects(t *testing.T) {
	rsaKey := keyFor(t, jose.RS256).priv.(*rsa.PrivateKey)
	p256 := keyFor(t, jose.ES256).priv.(*ecdsa.PrivateKey)
	p384 := keyFor(t, jose.ES384).priv.(*ecdsa.PrivateKey)
	edKey := keyFor(t, jose.EdDSA).priv.(ed25519.PrivateKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	garbage := pemOf("PRIVATE KEY", []byte("this-is-not-DER-and-must-not-be-echoed"))

	tests := []struct {
		name     string
		data     []byte
		id       string
		alg      jose.SignatureAlgorithm
		sentinel error  // errors.Is target, if any
		contains string // part of the message
	}{
		{"RSA 1024 refused", mustPKCS8(t, small), "", "", ErrKeyMismatch, "1024 bits"},
		{"RSA 1024 refused for PS256", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(small)), "", jose.PS256, ErrKeyMismatch, "at least 2048"},
		{"RSA key with ES256", mustPKCS8(t, rsaKey), "", jose.ES256, ErrKeyMismatch, "needs an EC P-256 key, got RSA 2048-bit"},
		{"P-256 key with ES384", mustSEC1(t, p256), "", jose.ES384, ErrKeyMismatch, "P-384"},
		{"P-384 key with ES256", mustSEC1(t, p384), "", jose.ES256, ErrKeyMismatch, "P-256"},
		{"EC key with RS256", mustSEC1(t, p256), "", jose.RS256, ErrKeyMismatch, "needs an RSA key"},
		{"Ed25519 key with ES256", mustPKCS8(t, edKey), "", jose.ES256, ErrKeyMismatch, "Ed25519"},
		{"RSA key with EdDSA", mustPKCS8(t, rsaKey), "", jose.EdDSA, ErrKeyMismatch, "needs an Ed25519 key"},
		{"P-521 has no allowed algorithm", mustPKCS8(t, p521), "", "", ErrKeyMismatch, "P-521"},
		{"P-521 with ES512", mustPKCS8(t, p521), "", jose.ES512, ErrUnsupportedAlgorithm, "ES512"},
		{"HS256 asked for", mustPKCS8(t, rsaKey), "", jose.HS256, ErrUnsupportedAlgorithm, "HMAC"},
		{"none asked for", mustPKCS8(t, rsaKey), "", "none", ErrUnsupportedAlgorithm, "unsigned"},
		{"RS512 not on the list", mustPKCS8(t, rsaKey), "", jose.RS512, ErrUnsupportedAlgorithm, "allowed: RS256, PS256, ES256, ES384, EdDSA"},
		{"oct JWK (HMAC secret)", []byte(`{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0","alg":"HS256"}`), "", "", ErrUnsupportedAlgorithm, "symmetric"},
		{"JWK alg none", mustJWK(t, jose.JSONWebKey{Key: rsaKey, Algorithm: "none"}), "", "", ErrUnsupportedAlgorithm, "none"},
		{"JWK alg conflicts with argument", mustJWK(t, jose.JSONWebKey{Key: rsaKey, Algorithm: "PS256"}), "", jose.RS256, ErrKeyMismatch, "JWK says PS256"},
		{"JWK kid conflicts with argument", mustJWK(t, jose.JSONWebKey{Key: rsaKey, KeyID: "a"}), "b", "", nil, `JWK says "a"`},
		{"JWK for encryption", mustJWK(t, jose.JSONWebKey{Key: rsaKey, Use: "enc"}), "", "", nil, `use "enc"`},
		{"public JWK", mustJWK(t, jose.JSONWebKey{Key: &rsaKey.PublicKey}), "", "", nil, "public key"},
		{"PEM Alg header conflicts", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Headers: map[string]string{"Alg": "PS256"}, Bytes: mustDER(t, rsaKey)}), "", jose.RS256, ErrKeyMismatch, "PEM says PS256"},
		{"public PEM", pemOf("PUBLIC KEY", pubDER), "", "", nil, "need the private key"},
		{"OpenSSH key", pemOf("OPENSSH PRIVATE KEY", []byte{1, 2, 3}), "", "", nil, "ssh-keygen"},
		{"encrypted PEM", pemOf("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), "", "", nil, "encrypted"},
		{"no PEM at all", []byte("hello"), "", "", nil, "no PEM private key"},
		{"broken DER", garbage, "", "", nil, "parse PRIVATE KEY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := LoadKey(writeFile(t, "key", tc.data, 0o600), tc.id, tc.alg)
			if err == nil {
				t.Fatalf("LoadKey accepted it: %v", k)
			}
			if tc.sentinel != nil && !errors.Is(err, tc.sentinel) {
				t.Errorf("error %q does not wrap %v", err, tc.sentinel)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not mention %q", err, tc.contains)
			}
			// Errors may name types and sizes, never the key file's content.
			for _, line := range strings.Split(string(tc.data), "\n") {
				if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(err.Error(), line) {
					t.Errorf("error echoes key file content: %q", err)
				}
			}
			if strings.Contains(err.Error(), "must-not-be-echoed") {
				t.Errorf("error echoes key bytes: %q", err)
			}
		})
	}
}

func mustDER(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// TestLoadKeyRefusesReadableByOthers: as OpenSSH does with identity files,
// a private key readable by group or others is refused (anyone who can read
// it can sign SETs as the organisation), unless InsecurePermissions says
// the mode cannot be helped; then it loads with a warning.
func TestLoadKeyRefusesReadableByOthers(t *testing.T) {
	data := mustPKCS8(t, keyFor(t, jose.ES256).priv)
	for _, tc := range []struct {
		mode   os.FileMode
		refuse bool
	}{
		{0o600, false},
		{0o400, false},
		{0o640, true},
		{0o644, true},
		{0o604, true},
	} {
		t.Run(fmt.Sprintf("%#o", tc.mode), func(t *testing.T) {
			p := writeFile(t, "key.pem", data, tc.mode)
			k, err := LoadKey(p, "", "")
			if tc.refuse {
				if !errors.Is(err, ErrKeyPermissions) {
					t.Fatalf("LoadKey = %v, want ErrKeyPermissions", err)
				}
				for _, want := range []string{p, "chmod 600", "insecure_permissions", "--insecure-key-permissions"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
			} else if err != nil || len(k.Warnings) > 0 {
				t.Fatalf("LoadKey = %v, warnings %v", err, k.Warnings)
			}
			k, err = LoadKey(p, "", "", InsecurePermissions())
			if err != nil {
				t.Fatalf("with InsecurePermissions: %v", err)
			}
			if got := len(k.Warnings) > 0; got != tc.refuse {
				t.Fatalf("warnings = %v, want a warning: %v", k.Warnings, tc.refuse)
			}
			if tc.refuse && !strings.Contains(k.Warnings[0], p) {
				t.Errorf("warning %q does not name the file", k.Warnings[0])
			}
		})
	}
}

// TestPrivatePEMCarriesChosenKID: a key generated with a chosen id comes
// back from its file with that id, not the thumbprint; a different id given
// at load is an error naming both, and a thumbprint-id key has no kid line.
func TestPrivatePEMCarriesChosenKID(t *testing.T) {
	k, err := GenerateKey(jose.ES256, "rp-2026-11")
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	p := writeFile(t, "key.pem", b, 0o600)
	got, err := LoadKey(p, "", "")
	if err != nil || got.ID != "rp-2026-11" {
		t.Fatalf("LoadKey = %v, %v; want id rp-2026-11", got, err)
	}
	if got, err := LoadKey(p, "rp-2026-11", ""); err != nil || got.ID != "rp-2026-11" {
		t.Fatalf("same id given: %v, %v", got, err)
	}
	if _, err := LoadKey(p, "other", ""); err == nil || !strings.Contains(err.Error(), `"other"`) || !strings.Contains(err.Error(), "rp-2026-11") {
		t.Fatalf("different id given: %v", err)
	}
	// The block itself is untouched: a plain PEM reader sees the key.
	if blk, _ := pem.Decode(b); blk == nil || blk.Type != "PRIVATE KEY" {
		t.Fatalf("PEM block not readable: %q", b)
	}
	anon, err := GenerateKey(jose.ES256, "")
	if err != nil {
		t.Fatal(err)
	}
	ab, _ := anon.PrivatePEM()
	if bytes.Contains(ab, []byte("kid:")) {
		t.Errorf("a thumbprint-id key got a kid line: %q", ab)
	}
	p2 := writeFile(t, "anon.pem", ab, 0o600)
	if got, err := LoadKey(p2, "chosen-later", ""); err != nil || got.ID != "chosen-later" {
		t.Fatalf("choosing an id at load for a thumbprint key: %v, %v", got, err)
	}
}

func TestLoadKeyMissingFile(t *testing.T) {
	_, err := LoadKey(filepath.Join(t.TempDir(), "nope.pem"), "", "")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want os.ErrNotExist", err)
	}
}

func TestGenerateKeyRoundTrip(t *testing.T) {
	for _, alg := range Algorithms() {
		t.Run(string(alg), func(t *testing.T) {
			k := keyFor(t, alg)
			privPEM, err := k.PrivatePEM()
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(privPEM); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("PrivatePEM is not PKCS#8 PEM")
			}
			// The written key loads back to the same kid; RSA needs the
			// algorithm again for PS256 since PKCS#8 cannot say it.
			loaded, err := LoadKey(writeFile(t, "k.pem", privPEM, 0o600), "", alg)
			if err != nil {
				t.Fatal(err)
			}
			if loaded.ID != k.ID || loaded.Alg != alg {
				t.Errorf("loaded %v, want %v", loaded, k)
			}

			pubPEM, err := k.PublicPEM()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := pem.Decode(pubPEM)
			if b == nil || b.Type != "PUBLIC KEY" {
				t.Fatalf("PublicPEM is not an SPKI PEM: %q", pubPEM)
			}
			pub, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Error("PublicPEM holds another key")
			}

			jwk := k.PublicJWK()
			if !jwk.IsPublic() || jwk.KeyID != k.ID || jwk.Algorithm != string(alg) || jwk.Use != "sig" {
				t.Errorf("PublicJWK = %+v", jwk)
			}
			raw, err := json.Marshal(jwk)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(raw), `"d"`) {
				t.Errorf("public JWK carries private members: %s", raw)
			}
		})
	}
	if _, err := GenerateKey(jose.HS256, ""); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("GenerateKey(HS256) err = %v", err)
	}
	if _, err := GenerateKey("none", ""); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("GenerateKey(none) err = %v", err)
	}
	if _, err := GenerateKey("", ""); !errors.Is(err, ErrUnsupportedAlgorithm) {
		t.Errorf("GenerateKey(\"\") err = %v", err)
	}
}

func TestJWKS(t *testing.T) {
	a, b := keyFor(t, jose.RS256), keyFor(t, jose.EdDSA)
	set := JWKS(a, nil, b)
	if len(set.Keys) != 2 || set.Keys[0].KeyID != a.ID || set.Keys[1].KeyID != b.ID {
		t.Fatalf("JWKS = %+v", set)
	}
	raw, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	var parsed jose.JSONWebKeySet
	if err := json.Unmarshal(raw, &parsed); err != nil {
		t.Fatal(err)
	}
	for _, k := range parsed.Keys {
		if !k.IsPublic() {
			t.Errorf("JWKS publishes a private key %s", k.KeyID)
		}
	}
	if got := parsed.Key(b.ID); len(got) != 1 || got[0].Algorithm != "EdDSA" {
		t.Errorf("JWKS lookup by kid = %+v", got)
	}
}

// TestKeyFormatRedacts checks every fmt verb, on Key and *Key, prints only
// the id and algorithm.
func TestKeyFormatRedacts(t *testing.T) {
	k := keyFor(t, jose.RS256)
	k.ID = "kid-1"
	d := k.priv.(*rsa.PrivateKey).D
	want := `signer.Key{ID:"kid-1", Alg:RS256}`
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{k, *k} {
			got := fmt.Sprintf(verb, v)
			if got != want {
				t.Errorf("Sprintf(%s, %T) = %q, want %q", verb, v, got, want)
			}
			if strings.Contains(got, d.String()[:20]) || strings.Contains(got, d.Text(16)[:20]) {
				t.Errorf("Sprintf(%s) leaks the private exponent", verb)
			}
		}
	}
	raw, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), d.String()[:20]) {
		t.Errorf("json.Marshal(Key) leaks the private exponent: %s", raw)
	}
}

// TestKeyMismatchSaysWhatToDo: a key that does not fit its alg (a P-384
// key configured as ES256, an RSA 1024 key) is refused with an error that
// tells the operator the two ways out: the alg this key does sign with,
// or how to make a key that fits.
func TestKeyMismatchSaysWhatToDo(t *testing.T) {
	p384 := keyFor(t, jose.ES384).priv.(*ecdsa.PrivateKey)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		alg  jose.SignatureAlgorithm
		want []string
	}{
		{"P-384 as ES256", mustSEC1(t, p384), jose.ES256, []string{"needs an EC P-256 key, got EC P-384", "set alg: ES384", "setrelay keys generate --alg ES256"}},
		{"RSA 1024", mustPKCS8(t, small), jose.RS256, []string{"1024 bits", "setrelay keys generate --alg RS256"}},
		{"RSA 1024 without alg", mustPKCS8(t, small), "", []string{"1024 bits", "setrelay keys generate --alg RS256"}},
		{"P-521", mustPKCS8(t, p521), "", []string{"P-521", "setrelay keys generate --alg ES256"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKey(writeFile(t, "key", tc.data, 0o600), "", tc.alg)
			if !errors.Is(err, ErrKeyMismatch) {
				t.Fatalf("err = %v, want ErrKeyMismatch", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
