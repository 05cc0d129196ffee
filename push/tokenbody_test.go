package push

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// A token endpoint answering megabytes is read no further than oauth2's
// 1 MiB cap, and nothing of the body reaches the error: a 200 that is cut
// (so not a token response) blocks, a 503 is retried.
func TestHugeTokenResponseIsBoundedAndNotEchoed(t *testing.T) {
	const size = 8 << 20
	for _, tt := range []struct {
		status  int
		outcome Outcome
	}{{http.StatusOK, Blocked}, {http.StatusServiceUnavailable, Retry}} {
		ts := newTokenServer(t, false)
		ts.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(tt.status)
			_, _ = w.Write([]byte(`{"access_token":"` + strings.Repeat("A", size) + `"}`))
		}
		rc := newReceiver(t, false, nil)
		c, _ := newTestClient(t, oauthConfig(rc, ts))
		r := c.Push(context.Background(), []byte(testJWS))
		if r.Outcome != tt.outcome || rc.hits.Load() != 0 {
			t.Fatalf("HTTP %d: result %+v, want %v with nothing pushed", tt.status, r, tt.outcome)
		}
		var te *TokenError
		if !errors.As(r.Error(), &te) || len(r.Error().Error()) > 1024 || strings.Contains(r.Error().Error(), "AAAA") {
			t.Fatalf("HTTP %d: error of %d bytes carries the body: %.200s", tt.status, len(r.Error().Error()), r.Error())
		}
	}
}
