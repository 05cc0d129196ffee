package push

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// tokenAnswer is a token endpoint answer of 200 with the given JSON members.
func tokenAnswer(members map[string]any) func(w http.ResponseWriter, r *http.Request, n int64) {
	return func(w http.ResponseWriter, _ *http.Request, _ int64) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(members)
	}
}

// RFC 6749 section 7.1: "The client MUST NOT use an access token if it does
// not understand the token type." setrelay understands only Bearer (RFC
// 6750), whose name section 5.1 makes case-insensitive. A token of another
// type must not be sent at all (oauth2's Token.Type would have put "MAC",
// "Basic" or "DPoP" in front of it), and since every token from that
// endpoint will be of that type, the receiver is blocked, not retried.
func TestTokenOfAnotherTypeIsNotUsed(t *testing.T) {
	for _, typ := range []string{"mac", "MAC", "Basic", "DPoP", "N_A", "pop"} {
		t.Run(typ, func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = tokenAnswer(map[string]any{"access_token": tokenValue(1), "token_type": typ, "expires_in": 3600})
			rc := newReceiver(t, false, nil)
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != Blocked || r.Reason != ReasonTokenConfig || r.Attempts != 0 {
				t.Fatalf("result %+v (%v), want blocked/token_config with no attempt", r, r.Error())
			}
			if rc.hits.Load() != 0 {
				t.Fatalf("the %s token was sent to the receiver", typ)
			}
			if msg := r.Error().Error(); !strings.Contains(msg, "token_type") || strings.Contains(msg, testTokenMarker) {
				t.Fatalf("error %q should name token_type and never the token", msg)
			}
		})
	}
}

// Bearer in any case, and (leniently) a response without token_type, are
// sent as "Bearer <token>", the scheme name RFC 6750 section 2.1 spells.
func TestBearerTokenTypeIsCaseInsensitive(t *testing.T) {
	for _, typ := range []any{"bearer", "BEARER", "Bearer", nil} {
		ts := newTokenServer(t, false)
		members := map[string]any{"access_token": tokenValue(1), "expires_in": 3600}
		if typ != nil {
			members["token_type"] = typ
		}
		ts.respond = tokenAnswer(members)
		rc := newReceiver(t, false, acceptTokens(tokenValue(1)))
		c, _ := newTestClient(t, oauthConfig(rc, ts))
		if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered {
			t.Fatalf("token_type %v: %v", typ, r.Error())
		}
	}
}

// RFC 6750 section 2.1: credentials = "Bearer" 1*SP b64token. An access
// token with white space or control characters cannot be sent as one: net/http
// refuses a header with a line break, which would otherwise surface as a
// retryable connection error for every SET until each ran out of attempts.
func TestAccessTokenThatIsNotAHeaderValueBlocks(t *testing.T) {
	for name, tok := range map[string]string{
		"space":     "abc def",
		"newline":   "abc\r\nX-Injected: 1",
		"tab":       "abc\tdef",
		"non-ascii": "abc\u00e9def",
	} {
		t.Run(name, func(t *testing.T) {
			ts := newTokenServer(t, false)
			ts.respond = tokenAnswer(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 3600})
			rc := newReceiver(t, false, nil)
			c, _ := newTestClient(t, oauthConfig(rc, ts))
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome != Blocked || r.Reason != ReasonTokenConfig || rc.hits.Load() != 0 {
				t.Fatalf("result %+v (%v), receiver hits %d; want blocked/token_config and nothing sent", r, r.Error(), rc.hits.Load())
			}
			if strings.Contains(r.Error().Error(), tok) {
				t.Fatalf("error %q repeats the access token", r.Error())
			}
		})
	}
}
