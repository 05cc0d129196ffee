package push

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// RFC 6750 section 3.1: insufficient_scope means "The request requires
// higher privileges than provided by the access token", answered with 403
// (and, by receivers that get it wrong, 401 or 400). The token's scopes are
// the relay's configuration, the same for every SET, so the receiver is
// blocked at once with its own reason; a bare 403 stays forbidden, judged by
// the worker's streak.
func TestClassifyInsufficientScopeChallengeBlocks(t *testing.T) {
	tests := []struct {
		status    int
		challenge []string
		desc      string
	}{
		{403, []string{`Bearer error="insufficient_scope", scope="ssf/push"`}, `scope required: "ssf/push"`},
		{403, []string{`Bearer realm="ssf",error="insufficient_scope",error_description="needs push"`}, `needs push`},
		{403, []string{`bearer error=insufficient_scope`}, ``},
		{403, []string{`Bearer error="insufficient_scope", error_description="needs \"push\" \\ more"`}, `needs "push" \ more`},
		{403, []string{`Basic realm="x"`, `Bearer realm="ssf", error="insufficient_scope"`}, ``},
		{403, []string{`Basic realm="x", Bearer error="insufficient_scope", scope="a b"`}, `scope required: "a b"`},
		{401, []string{`Bearer error="insufficient_scope"`}, ``},
		{400, []string{`Bearer error="insufficient_scope"`}, ``},
	}
	for _, tt := range tests {
		h := http.Header{"Www-Authenticate": tt.challenge}
		r := Classify(tt.status, h, nil, nil, classifyNow, 0)
		if r.Outcome != Blocked || r.Reason != ReasonInsufficientScope || r.Err != "insufficient_scope" {
			t.Errorf("%d %q: %+v, want blocked/insufficient_scope", tt.status, tt.challenge, r)
			continue
		}
		if tt.desc != "" && !strings.Contains(r.Description, tt.desc) {
			t.Errorf("%d %q: description %q, want it to contain %q", tt.status, tt.challenge, r.Description, tt.desc)
		}
	}
	// Not an insufficient_scope challenge: unchanged.
	for _, tt := range []struct {
		status    int
		challenge string
		outcome   Outcome
		reason    string
	}{
		{403, `Bearer realm="ssf"`, Permanent, ReasonForbidden},
		{403, `Basic error="insufficient_scope"`, Permanent, ReasonForbidden},
		{403, `Bearer error_description="insufficient_scope"`, Permanent, ReasonForbidden},
		{401, `Bearer error="invalid_token", error_description="expired"`, Refresh, ReasonAuthenticationFailed},
		{403, `Bearer error="insufficient_scope`, Permanent, ReasonForbidden}, // unterminated: not parsed
		{500, `Bearer error="insufficient_scope"`, Retry, ReasonHTTP5xx},
	} {
		r := Classify(tt.status, http.Header{"Www-Authenticate": {tt.challenge}}, nil, nil, classifyNow, 0)
		if r.Outcome != tt.outcome || r.Reason != tt.reason {
			t.Errorf("%d %q: %v/%s, want %v/%s", tt.status, tt.challenge, r.Outcome, r.Reason, tt.outcome, tt.reason)
		}
	}
}

// Through a real client: the refusal is not met with a token refresh (the
// new token would carry the same scopes), the push is not repeated, and
// the receiver's description cannot carry the token into the result.
func TestInsufficientScopeBlocksWithoutRefresh(t *testing.T) {
	ts := newTokenServer(t, false)
	rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="ssf/push", error_description="token `+r.Header.Get("Authorization")+` lacks ssf/push"`)
		w.WriteHeader(http.StatusForbidden)
	})
	c, _ := newTestClient(t, oauthConfig(rc, ts))
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Blocked || r.Reason != ReasonInsufficientScope || r.Attempts != 1 || rc.hits.Load() != 1 || ts.requests.Load() != 1 {
		t.Fatalf("result %+v, receiver hits %d, token requests %d; want blocked after one push and one token", r, rc.hits.Load(), ts.requests.Load())
	}
	if strings.Contains(r.Error().Error(), testTokenMarker) {
		t.Fatalf("error %q carries the access token", r.Error())
	}
	if !strings.Contains(r.Description, "ssf/push") {
		t.Fatalf("description %q does not name the scope the receiver wants", r.Description)
	}
}
