package receiver

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func pemBlock(t *testing.T, typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkixPEM(t *testing.T, k testKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock(t, "PUBLIC KEY", der)
}

// TestKeySourcesAndAlgorithms signs with each default algorithm and
// verifies through each kind of key source.
func TestKeySourcesAndAlgorithms(t *testing.T) {
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.EdDSA}
	for _, alg := range algs {
		k := newKey(t, alg, "kid-"+string(alg))
		set := jwks(k)
		sources := map[string]func(c *Config){
			"memory":    func(c *Config) { c.Keys = set },
			"jwks file": func(c *Config) { c.Keys = nil; c.JWKSFile = writeFile(t, "jwks.json", mustJSON(t, set)) },
			"jwk file":  func(c *Config) { c.Keys = nil; c.JWKSFile = writeFile(t, "jwk.json", mustJSON(t, k.public())) },
			"pem file":  func(c *Config) { c.Keys = nil; c.PEMFile = writeFile(t, "pub.pem", pkixPEM(t, k)) },
			"jwks url": func(c *Config) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					_ = json.NewEncoder(w).Encode(set)
				}))
				t.Cleanup(srv.Close)
				c.Keys = nil
				c.JWKSURL = srv.URL + "/jwks.json"
			},
		}
		for name, src := range sources {
			t.Run(string(alg)+"/"+name, func(t *testing.T) {
				h := newHarness(t, src)
				h.key = k
				tok := h.token()
				// With and without a kid: GOV.UK's transmitter sends none.
				for _, kid := range []string{k.kid, ""} {
					kk := k
					kk.kid = kid
					jws := sign(t, kk, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j"+kid)))
					if resp, body := h.push(tok, jws, nil); resp.StatusCode != 202 {
						t.Fatalf("kid %q: %d %s", kid, resp.StatusCode, body)
					}
				}
			})
		}
	}
}

func TestPEMForms(t *testing.T) {
	k := newKey(t, jose.RS256, "")
	pub := k.priv.Public().(*rsa.PublicKey)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "transmitter"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, k.priv)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string][]byte{
		"pkcs1":       pemBlock(t, "RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(pub)),
		"certificate": pemBlock(t, "CERTIFICATE", cert),
		"two keys":    append(pkixPEM(t, newKey(t, jose.ES256, "")), pkixPEM(t, k)...),
	}
	for name, data := range forms {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Keys = nil; c.PEMFile = writeFile(t, "k.pem", data) })
			h.key = k
			// A kid the PEM cannot name still verifies: PEM keys have none.
			kk := k
			kk.kid = "whatever"
			if resp, body := h.push(h.token(), sign(t, kk, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "p"))), nil); resp.StatusCode != 202 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("private key refused", func(t *testing.T) {
		der, err := x509.MarshalPKCS8PrivateKey(k.priv)
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{ClientID: "c", ClientSecret: "s", Issuer: "i", Audience: "a", PEMFile: writeFile(t, "p.pem", pemBlock(t, "PRIVATE KEY", der))}
		if _, err := New(cfg, nil); err == nil {
			t.Fatal("New accepted a private key PEM")
		}
	})
}

// TestJWKSURLCachingAndRotation: the JWKS is fetched once and cached; a SET
// naming an unknown kid makes the receiver look again (at most every 10 s),
// so a transmitter's key rotation needs no restart.
func TestJWKSURLCachingAndRotation(t *testing.T) {
	oldKey, newK := newKey(t, jose.ES256, "old"), newKey(t, jose.ES256, "new")
	var (
		mu      sync.Mutex
		current = jwks(oldKey)
		fetches atomic.Int32
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(current)
	}))
	defer srv.Close()
	h := newHarness(t, func(c *Config) { c.Keys = nil; c.JWKSURL = srv.URL })
	tok := h.token()
	push := func(k testKey, jti string) int {
		resp, _ := h.push(tok, sign(t, k, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), jti))), nil)
		return resp.StatusCode
	}
	for i := range 3 {
		if s := push(oldKey, string(rune('a'+i))); s != 202 {
			t.Fatalf("old key: %d", s)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 3 SETs, want 1 (cached)", n)
	}
	mu.Lock()
	current = jwks(oldKey, newK)
	mu.Unlock()
	if s := push(newK, "n1"); s != 400 {
		t.Fatalf("new key within 10 s of the last fetch: %d, want 400 invalid_key", s)
	}
	h.clock.Add(11 * time.Second)
	if s := push(newK, "n2"); s != 202 {
		t.Fatalf("new key after rotation: %d", s)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("%d fetches, want 2", n)
	}
}

func TestJWKSURLUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()
	h := newHarness(t, func(c *Config) { c.Keys = nil; c.JWKSURL = srv.URL })
	resp, _ := h.push(h.token(), h.set(claims(h.clock.Now(), "x")), nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503: our key source is down, not the transmitter's fault", resp.StatusCode)
	}
	if st := h.r.Stats(); len(st.Violations) != 0 || len(st.Rejections) != 0 {
		t.Fatalf("stats %+v", st)
	}
}
