package receiver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkEvents measures the cost of one push through the handler (token
// check, full verification, claims checks, duplicate lookup) against the
// baseline of a bare go-jose signature verification of the same SET, so
// the receiver's own overhead reads as the difference.
func BenchmarkEvents(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		h := newHarness(b, nil)
		h.key = newKey(b, alg, "k")
		r, err := New(Config{ClientID: testClient, ClientSecret: testSecret, Issuer: testIssuer, Audience: testAudience,
			Keys: jwks(h.key), Now: h.clock.Now, Quiet: true}, nil)
		if err != nil {
			b.Fatal(err)
		}
		tok, _, _ := r.tokens.issue()
		jws := h.set(claims(h.clock.Now(), "bench"))
		handler := r.Handler()

		b.Run(string(alg)+"/baseline-verify", func(b *testing.B) {
			pub := h.key.priv.Public()
			for b.Loop() {
				obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{alg})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := obj.Verify(pub); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/handler", func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/events", strings.NewReader(jws))
				req.Header.Set("Content-Type", "application/secevent+jwt")
				req.Header.Set("Accept", "application/json")
				req.Header.Set("Authorization", "Bearer "+tok)
				w := httptest.NewRecorder()
				handler.ServeHTTP(w, req)
				if w.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}
