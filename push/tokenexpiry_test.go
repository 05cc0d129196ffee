package push

import (
	"context"
	"net/http"
	"testing"
)

// RFC 6749 5.1's expires_in is a lifetime; a negative one is nonsense that
// oauth2 turns into an expiry in the past, so every push fetched a new
// token. It is treated like a missing expires_in, as oauth2 treats 0: the
// token is kept until the receiver refuses it.
func TestNegativeExpiresInDoesNotFetchATokenPerPush(t *testing.T) {
	for _, ct := range []string{"application/json", "application/x-www-form-urlencoded"} {
		t.Run(ct, func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = func(w http.ResponseWriter, _ *http.Request, n int64) {
				w.Header().Set("Content-Type", ct)
				if ct == "application/json" {
					_, _ = w.Write([]byte(`{"access_token":"` + tokenValue(n) + `","token_type":"Bearer","expires_in":-3600}`))
					return
				}
				_, _ = w.Write([]byte("access_token=" + tokenValue(n) + "&token_type=bearer&expires_in=-3600"))
			}
			rc := newReceiver(t, false, acceptTokens(tokenValue(1)))
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			for range 20 {
				if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
					t.Fatal(r.Error())
				}
			}
			if n := ts.requests.Load(); n != 1 {
				t.Fatalf("20 pushes made %d token requests, want 1", n)
			}
		})
	}
}
