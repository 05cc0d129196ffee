package push

import (
	"context"
	"net/url"
	"testing"
)

// The token endpoint's certificate is verified like the push endpoint's,
// and a failure of name or trust is the same configuration mistake
// (token_url, or tls.ca_file): the receiver is blocked, as it is for the
// push endpoint (TestTLSIsVerified), rather than every SET retried against
// a handshake that cannot succeed until an operator acts. The client
// secret never crosses the unverified connection.
func TestTokenEndpointTLSFailureBlocks(t *testing.T) {
	t.Run("untrusted", func(t *testing.T) {
		ts := newTokenServer(t, true)
		rc := newReceiver(t, false, nil)
		cfg := oauthConfig(rc, ts) // no CA: httptest's certificate is not trusted
		c, _ := newTestClient(t, cfg)
		r := c.Push(context.Background(), []byte(testJWS))
		if r.Outcome != Blocked || r.Reason != ReasonTokenConfig || ts.requests.Load() != 0 || rc.hits.Load() != 0 {
			t.Fatalf("result %+v (%v), token requests %d, pushes %d; want blocked/token_config and nothing sent", r, r.Error(), ts.requests.Load(), rc.hits.Load())
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		ts := newTokenServer(t, true)
		rc := newReceiver(t, true, nil)
		cfg := oauthConfig(rc, ts) // trusts httptest's CA
		u, _ := url.Parse(ts.URL)
		// httptest's certificate names 127.0.0.1 and example.com, not localhost.
		cfg.Auth.TokenURL = "https://localhost:" + u.Port() + "/oauth2/token"
		c, _ := newTestClient(t, cfg)
		r := c.Push(context.Background(), []byte(testJWS))
		if r.Outcome != Blocked || r.Reason != ReasonTokenConfig || ts.requests.Load() != 0 {
			t.Fatalf("result %+v (%v), token requests %d; want blocked/token_config", r, r.Error(), ts.requests.Load())
		}
	})
}
