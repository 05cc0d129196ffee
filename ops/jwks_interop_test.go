package ops

import (
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/signer"
)

// shortXKey generates ES256 keys until one's x coordinate has a leading
// zero byte (1 in 256), the case RFC 7518 section 6.2.1.2 settles: "The
// length of this octet string MUST be the full size of a coordinate for
// the curve", so the zero must be kept, and a receiver that decodes a
// 31-byte x refuses the key.
func shortXKey(t *testing.T) *signer.Key {
	t.Helper()
	for range 20000 {
		k, err := signer.GenerateKey(jose.ES256, "")
		if err != nil {
			t.Fatal(err)
		}
		// The uncompressed point is 0x04 || x || y, each 32 bytes.
		b, err := k.Public().(*ecdsa.PublicKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		if b[1] == 0 {
			return k
		}
	}
	t.Fatal("no P-256 key with a short x in 20000")
	return nil
}

// TestJWKSAsAReceiverSeesIt fetches /jwks.json over HTTP as an
// independent receiver does, checks each member against RFC 7517 and
// RFC 7518 section 6 (and RFC 8037 for Ed25519), and verifies a SET of
// every algorithm with jwx, finding the key by the header's kid.
func TestJWKSAsAReceiverSeesIt(t *testing.T) {
	var keys []*signer.Key
	for _, alg := range signer.Algorithms() {
		k, err := signer.GenerateKey(alg, "k-"+strings.ToLower(string(alg)))
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	short := shortXKey(t)
	short.ID = "k-es256-short-x"
	keys = append(keys, short)

	s, err := New(Config{Registry: prometheus.NewRegistry(), JWKS: signer.JWKS(keys...)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jwks.json: %d %v", resp.StatusCode, err)
	}
	// RFC 7517 section 8.5 registers application/jwk-set+json.
	if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=300") {
		t.Errorf("Cache-Control %q, want a bounded max-age so a rotation is seen", cc)
	}

	checkJWKSMembers(t, body, keys)

	set, err := jwk.Parse(body)
	if err != nil {
		t.Fatalf("jwx does not parse the JWKS: %v", err)
	}
	if set.Len() != len(keys) {
		t.Fatalf("jwx sees %d keys, want %d", set.Len(), len(keys))
	}
	for _, k := range keys {
		sg, err := signer.New(k)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte(`{"iss":"https://issuer.example/","jti":"` + k.ID + `"}`)
		compact, err := sg.Sign(payload, true)
		if err != nil {
			t.Fatal(err)
		}
		got, err := jws.Verify([]byte(compact), jws.WithKeySet(set, jws.WithRequireKid(true)))
		if err != nil || string(got) != string(payload) {
			t.Errorf("%s (%s): jwx does not verify the SET with the served JWKS: %v", k.ID, k.Alg, err)
		}
	}
}

// checkJWKSMembers reads the served JSON itself, not through a library
// that would tolerate or repair a wrong encoding.
func checkJWKSMembers(t *testing.T, body []byte, keys []*signer.Key) {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	byID := map[string]*signer.Key{}
	for _, k := range keys {
		byID[k.ID] = k
	}
	seen := map[string]bool{}
	// The public members of RFC 7518 section 6 and RFC 8037 section 2,
	// plus kid, alg and use (RFC 7517 section 4).
	allowed := map[string]bool{"kty": true, "crv": true, "x": true, "y": true, "n": true, "e": true, "kid": true, "alg": true, "use": true}
	b64 := func(jk map[string]any, name string) []byte {
		s, _ := jk[name].(string)
		// Base64url without padding (RFC 7515 section 2, RFC 7518 section 6).
		if s == "" || strings.ContainsAny(s, "=+/") {
			t.Errorf("kid %v: %s = %q is not unpadded base64url", jk["kid"], name, s)
		}
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Errorf("kid %v: %s: %v", jk["kid"], name, err)
		}
		return b
	}
	for _, jk := range doc.Keys {
		for m := range jk {
			if !allowed[m] {
				t.Errorf("kid %v: member %q is not a public key member", jk["kid"], m)
			}
		}
		kid, _ := jk["kid"].(string)
		if seen[kid] {
			t.Errorf("kid %q twice", kid)
		}
		seen[kid] = true
		k := byID[kid]
		if k == nil {
			t.Errorf("unknown kid %q", kid)
			continue
		}
		if jk["alg"] != string(k.Alg) || jk["use"] != "sig" {
			t.Errorf("kid %s: alg %v use %v, want %s sig", kid, jk["alg"], jk["use"], k.Alg)
		}
		switch k.Alg {
		case jose.ES256, jose.ES384:
			size, crv := 32, "P-256"
			if k.Alg == jose.ES384 {
				size, crv = 48, "P-384"
			}
			if jk["kty"] != "EC" || jk["crv"] != crv {
				t.Errorf("kid %s: kty %v crv %v", kid, jk["kty"], jk["crv"])
			}
			// RFC 7518 section 6.2.1.2 and 6.2.1.3: full coordinate size.
			if x, y := b64(jk, "x"), b64(jk, "y"); len(x) != size || len(y) != size {
				t.Errorf("kid %s: x %d and y %d bytes, want %d each", kid, len(x), len(y), size)
			}
		case jose.RS256, jose.PS256:
			if jk["kty"] != "RSA" {
				t.Errorf("kid %s: kty %v", kid, jk["kty"])
			}
			// RFC 7518 section 2 Base64urlUInt: the minimum number of
			// octets, so no leading zero; 65537 is "AQAB".
			if n := b64(jk, "n"); len(n) != 256 || n[0] == 0 {
				t.Errorf("kid %s: n is %d bytes, leading %#x", kid, len(n), n[0])
			}
			if e, _ := jk["e"].(string); e != "AQAB" {
				t.Errorf("kid %s: e = %q", kid, e)
			}
		case jose.EdDSA:
			// RFC 8037 section 2: kty OKP, crv Ed25519, x the 32-byte key.
			if jk["kty"] != "OKP" || jk["crv"] != "Ed25519" || len(b64(jk, "x")) != 32 {
				t.Errorf("kid %s: %v", kid, jk)
			}
		}
	}
	if len(seen) != len(keys) {
		t.Errorf("%d keys served, want %d", len(seen), len(keys))
	}
}
