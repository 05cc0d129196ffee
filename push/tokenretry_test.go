package push

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// RFC 6585 section 4 (429) and RFC 9110 section 15.6.4 (503) let the token
// endpoint say how long to wait with Retry-After (RFC 9110 section 10.2.3:
// "how long the user agent ought to wait before making a follow-up
// request"). The push result carries it, so the worker's redelivery waits at
// least that long, and the token endpoint is not asked again before it
// ends, whichever worker asks.
func TestTokenEndpointRetryAfterIsHonoured(t *testing.T) {
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
				w.Header().Set("Retry-After", "30")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(status)
				_, _ = io.WriteString(w, `{"error":"slow_down"}`)
			}
			rc := newReceiver(t, false, nil)
			cfg := oauthConfig(rc, ts)
			c, _ := newTestClient(t, cfg)
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != Retry || r.Reason != ReasonToken || r.Status != status {
				t.Fatalf("result %+v (%v)", r, r.Error())
			}
			// Generous bounds: the machine is loaded.
			if r.RetryAfter < 25*time.Second || r.RetryAfter > 30*time.Second {
				t.Fatalf("RetryAfter %v, want the endpoint's 30 s", r.RetryAfter)
			}
			// Past the short failure hold that only collapses a burst.
			time.Sleep(tokenFailureHold + 200*time.Millisecond)
			r = c.Push(context.Background(), []byte(testJWS))
			if n := ts.requests.Load(); n != 1 {
				t.Fatalf("token endpoint asked %d times within its Retry-After, want 1", n)
			}
			if r.Outcome != Retry || r.RetryAfter <= 0 || r.RetryAfter > 28*time.Second {
				t.Fatalf("second push %+v: want Retry with what is left of the 30 s", r)
			}
		})
	}
}

// A Retry-After beyond MaxRetryAfter is capped, as for the push endpoint.
func TestTokenEndpointRetryAfterIsCapped(t *testing.T) {
	ts := newTokenServer(t, false)
	ts.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Retry-After", "86400")
		w.WriteHeader(http.StatusTooManyRequests)
	}
	rc := newReceiver(t, false, nil)
	cfg := oauthConfig(rc, ts)
	cfg.MaxRetryAfter = 5 * time.Minute
	c, _ := newTestClient(t, cfg)
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Retry || r.RetryAfter != 5*time.Minute {
		t.Fatalf("result %+v, want Retry after the 5 min cap", r)
	}
}
