package push

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
)

// RFC 6749 section 5.2: the token endpoint "responds with an HTTP 400 (Bad
// Request) status code (unless specified otherwise)" to a request it
// refuses, and the error codes are extensible (section 8.5). In the client
// credentials grant every parameter is the relay's configuration, so a 4xx
// with an error code this version does not know (RFC 8707's invalid_target,
// a vendor's own) is as much a configuration mistake as invalid_scope: the
// same request gets the same answer. Only the codes that say "later"
// (temporarily_unavailable, server_error) stay retryable.
func TestTokenEndpointUnknownErrorCodeBlocks(t *testing.T) {
	tests := []struct {
		status  int
		code    string
		outcome Outcome
	}{
		{400, "invalid_target", Blocked},
		{400, "invalid_audience", Blocked},
		{403, "access_denied", Blocked},
		{400, "temporarily_unavailable", Retry},
		{400, "server_error", Retry},
		{503, "temporarily_unavailable", Retry},
		{500, "some_vendor_failure", Retry},
		{429, "rate_limited", Retry},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = func(w http.ResponseWriter, _ *http.Request, _ int64) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, `{"error":"`+tt.code+`","error_description":"no"}`)
			}
			rc := newReceiver(t, false, nil)
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			r := c.Push(context.Background(), []byte(testJWS))
			wantReason := ReasonToken
			if tt.outcome == Blocked {
				wantReason = ReasonTokenConfig
			}
			if r.Outcome != tt.outcome || r.Reason != wantReason || r.Status != tt.status {
				t.Fatalf("HTTP %d %s: result %+v (%v), want %v/%s", tt.status, tt.code, r, r.Error(), tt.outcome, wantReason)
			}
			var te *TokenError
			if !errors.As(r.Error(), &te) || te.Code != tt.code {
				t.Fatalf("error %v does not carry the code", r.Error())
			}
		})
	}
}
