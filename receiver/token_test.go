package receiver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

func decodeToken(t *testing.T, resp *http.Response, body []byte) tokenResponse {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("token response without Cache-Control: no-store")
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatal(err)
	}
	if tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn <= 0 {
		t.Fatalf("token response %s", body)
	}
	return tr
}

func TestTokenBasicAndFormAuthGiveTheSameToken(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TokenLifetime = time.Hour })
	grant := func() url.Values { return url.Values{"grant_type": {"client_credentials"}} }
	resp, body := h.tokenRequest(grant(), true, testClient, testSecret)
	basic := decodeToken(t, resp, body)
	if basic.ExpiresIn != 3600 {
		t.Fatalf("expires_in %d, want 3600", basic.ExpiresIn)
	}
	h.clock.Add(10 * time.Minute)
	resp, body = h.tokenRequest(grant(), false, testClient, testSecret)
	form := decodeToken(t, resp, body)
	if form.AccessToken != basic.AccessToken {
		t.Fatalf("a second request within the lifetime minted a new token")
	}
	if form.ExpiresIn != 3000 {
		t.Fatalf("expires_in %d, want the remaining 3000", form.ExpiresIn)
	}
	if st := h.r.Stats(); st.TokenRequests != 2 || st.TokensIssued != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenExpiry(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.TokenLifetime = time.Minute })
	first := h.token()
	if resp, body := h.push(first, h.set(claims(h.clock.Now(), "a")), nil); resp.StatusCode != 202 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	h.clock.Add(time.Minute)
	resp, body := h.push(first, h.set(claims(h.clock.Now(), "b")), nil)
	if e := rfc8935Error(t, resp, body); resp.StatusCode != 401 || e.Err != ErrAuthenticationFailed || !strings.Contains(e.Description, "expired") {
		t.Fatalf("expired token: %d %+v", resp.StatusCode, e)
	}
	if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("challenge %q", resp.Header.Get("WWW-Authenticate"))
	}
	second := h.token()
	if second == first {
		t.Fatal("same token after expiry")
	}
	if resp, body := h.push(second, h.set(claims(h.clock.Now(), "b")), nil); resp.StatusCode != 202 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if st := h.r.Stats(); st.TokensIssued != 2 || st.Violations[VTokenExpired] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenErrors(t *testing.T) {
	cc := url.Values{"grant_type": {"client_credentials"}}
	cases := []struct {
		name   string
		cfg    func(*Config)
		build  func(h *harness) *http.Request
		status int
		code   string
	}{
		{name: "wrong secret basic", build: func(h *harness) *http.Request { return tokenReq(h, cc, testClient, "nope", true) }, status: 401, code: "invalid_client"},
		{name: "wrong secret form", build: func(h *harness) *http.Request { return tokenReq(h, cc, testClient, "nope", false) }, status: 401, code: "invalid_client"},
		{name: "unknown client", build: func(h *harness) *http.Request { return tokenReq(h, cc, "someone", testSecret, true) }, status: 401, code: "invalid_client"},
		{name: "no client auth", build: func(h *harness) *http.Request { return tokenReq(h, cc, "", "", false) }, status: 401, code: "invalid_client"},
		{name: "two auth methods", build: func(h *harness) *http.Request {
			r := tokenReq(h, url.Values{"grant_type": {"client_credentials"}, "client_secret": {testSecret}}, testClient, testSecret, true)
			return r
		}, status: 400, code: "invalid_request"},
		{name: "grant missing", build: func(h *harness) *http.Request { return tokenReq(h, url.Values{}, testClient, testSecret, true) }, status: 400, code: "invalid_request"},
		{name: "password grant", build: func(h *harness) *http.Request {
			return tokenReq(h, url.Values{"grant_type": {"password"}}, testClient, testSecret, true)
		}, status: 400, code: "unsupported_grant_type"},
		{name: "scope not allowed", cfg: func(c *Config) { c.Scopes = []string{"messages/write"} }, build: func(h *harness) *http.Request {
			return tokenReq(h, url.Values{"grant_type": {"client_credentials"}, "scope": {"admin"}}, testClient, testSecret, true)
		}, status: 400, code: "invalid_scope"},
		{name: "repeated parameter", build: func(h *harness) *http.Request {
			return tokenReq(h, url.Values{"grant_type": {"client_credentials", "client_credentials"}}, testClient, testSecret, true)
		}, status: 400, code: "invalid_request"},
		{name: "json body", build: func(h *harness) *http.Request {
			r := tokenReq(h, cc, testClient, testSecret, true)
			r.Header.Set("Content-Type", "application/json")
			return r
		}, status: 400, code: "invalid_request"},
		{name: "GET", build: func(h *harness) *http.Request {
			r := mustRequest(t, http.MethodGet, h.srv.URL+"/token")
			r.SetBasicAuth(testClient, testSecret)
			return r
		}, status: 405, code: "invalid_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg)
			resp, body := do(t, c.build(h))
			var e struct {
				Error            string `json:"error"`
				ErrorDescription string `json:"error_description"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if resp.StatusCode != c.status || e.Error != c.code || e.ErrorDescription == "" {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, c.status, c.code)
			}
			if st := h.r.Stats(); st.TokenErrors[c.code] != 1 || st.TokensIssued != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func tokenReq(h *harness, form url.Values, id, secret string, basic bool) *http.Request {
	f := url.Values{}
	for k, v := range form {
		f[k] = v
	}
	if !basic && id != "" {
		f.Set("client_id", id)
		f.Set("client_secret", secret)
	}
	r, err := http.NewRequest(http.MethodPost, h.srv.URL+"/token", strings.NewReader(f.Encode()))
	if err != nil {
		h.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if basic {
		r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	}
	return r
}

// TestTokenWithOAuth2Client checks interoperability with the client setrelay
// itself is most likely to use, in both authentication styles and with a
// GOV.UK-style scope.
func TestTokenWithOAuth2Client(t *testing.T) {
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		h := newHarness(t, func(c *Config) { c.Scopes = []string{"messages/write"} })
		cc := clientcredentials.Config{
			ClientID: testClient, ClientSecret: testSecret, TokenURL: h.srv.URL + "/token",
			Scopes: []string{"messages/write"}, AuthStyle: style,
		}
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("style %d: %v", style, err)
		}
		if tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
			t.Fatalf("token %+v", tok)
		}
		if resp, body := h.push(tok.AccessToken, h.set(claims(h.clock.Now(), "o")), nil); resp.StatusCode != 202 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
}
