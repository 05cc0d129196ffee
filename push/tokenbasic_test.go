package push

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/setrelay/setrelay/secret"
)

// RFC 6749 section 2.3.1: for HTTP Basic "the client identifier is encoded
// using the application/x-www-form-urlencoded encoding algorithm per
// Appendix B, and the encoded value is used as the username; the client
// password is encoded using the same algorithm and used as the password."
// A client_id with ':' and a secret with '@', ' ', '+', '/', ':' and '%'
// must arrive encoded that way. And the style is never guessed: when the
// endpoint refuses the Basic credentials, the secret is not then tried in
// the request body (oauth2's auto-detection would do that), so it goes
// only where the operator configured it, in exactly one request.
func TestClientSecretBasicIsFormEncodedAndNeverRetriedInTheBody(t *testing.T) {
	const id, sec = "relay:client", "p@ss w+rd/:%é"
	var mu sync.Mutex
	var requests []string
	ts := newTokenServer(t, false)
	ts.respond = func(w http.ResponseWriter, r *http.Request, _ int64) {
		mu.Lock()
		requests = append(requests, r.Header.Get("Authorization")+" | "+r.PostForm.Encode())
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
	}
	rc := newReceiver(t, false, nil)
	cfg := oauthConfig(rc, ts)
	cfg.Auth.ClientID, cfg.Auth.ClientSecret = id, secret.Value(sec)
	c, _ := newTestClient(t, cfg)
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Blocked || r.Reason != ReasonTokenConfig {
		t.Fatalf("result %+v", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(requests) != 1 {
		t.Fatalf("%d token requests, want 1 (no fallback to another auth style): %q", len(requests), requests)
	}
	authz, form, _ := strings.Cut(requests[0], " | ")
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(authz, "Basic "))
	want := "relay%3Aclient:p%40ss+w%2Brd%2F%3A%25%C3%A9"
	if !strings.HasPrefix(authz, "Basic ") || err != nil || string(raw) != want {
		t.Fatalf("Authorization %q decodes to %q, want Basic of %q", authz, raw, want)
	}
	if strings.Contains(form, "client_secret") || strings.Contains(form, "client_id") {
		t.Fatalf("credentials in the body as well: %q", form)
	}
}
