package ssf_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/setrelay/setrelay/ssf"
)

// The authorization server's keys are fetched at most once per 30 s
// whatever comes in: with its JWKS endpoint failing, every JWT-shaped
// bearer token (anyone on the network can send one) made the transmitter
// fetch again, one after another under the keys' lock, so unauthenticated
// requests drove a fetch each at the authorization server and queued
// behind each other's fetch. Meanwhile JWT clients get 503 (try again),
// not 401, and static-token clients are served as usual.
func TestJWKSFetchFailureIsNotRetriedPerRequest(t *testing.T) {
	var hits atomic.Int64
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(jwks.Close)
	x := newTX(t, txOptions{JWT: &ssf.JWTAuth{Issuer: "https://as.example/", JWKSURI: jwks.URL + "/jwks", Audience: "https://tx.example/"}})
	forged := newAuthServer(t)
	tok := forged.token(t, forged.key, map[string]any{"iss": "https://as.example/", "aud": "https://tx.example/", "client_id": "x"})
	for range 20 {
		if status, body, _ := x.do("GET", "/ssf/streams", tok, nil); status != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503 while the keys cannot be had: %s", status, body)
		}
	}
	if n := hits.Load(); n > 2 {
		t.Fatalf("20 requests fetched the keys %d times, want at most 1 (with a retry)", n)
	}
	x.must(200, "GET", "/ssf/streams", tokenA, nil, nil)
}
