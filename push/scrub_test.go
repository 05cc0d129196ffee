package push

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/secret"
)

// TestEscapedCredentialEchoScrubbed: receivers echo the request's
// Authorization header in their error bodies in the escaping of their own
// language: PHP and org.json write "/" as "\/", JSON decoders then turn a
// "\u002f" back into "/" in the description, and a redirect carries it
// URL-encoded. Every form must be gone from what Push returns, because
// the body excerpt, the description and the Location land in dead letters
// and logs.
func TestEscapedCredentialEchoScrubbed(t *testing.T) {
	// A static Basic credential whose base64 has '/', '+' and '='.
	const cred = "c2V0/cmVs+YXk6c2Vj/cmV0LXBhc3N3b3Jk=="
	const authz = "Basic " + cred
	cases := map[string]func(w http.ResponseWriter, a string){
		"php slash escape": func(w http.ResponseWriter, a string) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"err":"invalid_request","description":"bad header %s"}`, strings.ReplaceAll(a, "/", `\/`))
		},
		"unicode escape": func(w http.ResponseWriter, a string) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"err":"invalid_request","description":"bad header %s"}`, strings.ReplaceAll(a, "/", `\u002f`))
		},
		"query escaped redirect": func(w http.ResponseWriter, a string) {
			w.Header().Set("Location", "https://elsewhere.example/?auth="+url.QueryEscape(a))
			w.WriteHeader(http.StatusFound)
		},
		"escaped body": func(w http.ResponseWriter, a string) {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "upstream said: %s", url.QueryEscape(a))
		},
	}
	for name, respond := range cases {
		t.Run(name, func(t *testing.T) {
			rc := newReceiver(t, false, func(w http.ResponseWriter, r *http.Request, _ []byte, _ int64) {
				respond(w, r.Header.Get("Authorization"))
			})
			c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true,
				Auth: AuthConfig{AuthorizationHeader: authz}})
			r := c.Push(context.Background(), []byte(testJWS))
			if r.Outcome == Delivered {
				t.Fatalf("result %+v", r)
			}
			all := strings.Join([]string{r.Description, r.Err, r.Body, r.Location, fmt.Sprintf("%v %+v", r, r.Error())}, "\n")
			// The credential's longest run without any character an
			// escaping could change.
			for _, part := range []string{"cmV0LXBhc3N3b3Jk", "YXk6c2Vj"} {
				if strings.Contains(all, part) {
					t.Errorf("credential fragment %q leaked:\n%s", part, all)
				}
			}
			if !strings.Contains(all, secret.Redacted) {
				t.Errorf("no %s marker where the credential was:\n%s", secret.Redacted, all)
			}
		})
	}
}

// TestInsecureHTTPWarnsOffLoopback: insecure_http is accepted for any host
// (a compose network's receiver has a name, not 127.0.0.1), but sending
// the credentials unencrypted anywhere but loopback is worth a warning.
func TestInsecureHTTPWarnsOffLoopback(t *testing.T) {
	cases := []struct {
		endpoint, tokenURL string
		warn               bool
	}{
		{"http://127.0.0.1:8080/events", "http://localhost:8080/token", false},
		{"http://[::1]:8080/events", "", false},
		{"https://rcv.example/events", "https://idp.example/token", false},
		{"http://receiver:8080/events", "http://127.0.0.1/token", true},
		{"https://rcv.example/events", "http://idp.example/token", true},
	}
	for _, tc := range cases {
		cfg := Config{Name: "r", Endpoint: tc.endpoint, InsecureHTTP: true}
		if tc.tokenURL != "" {
			cfg.Auth = AuthConfig{TokenURL: tc.tokenURL, ClientID: "id", ClientSecret: "s3cret-value"}
		} else {
			cfg.Auth = AuthConfig{AuthorizationHeader: "Bearer abc"}
		}
		_, logs := newTestClient(t, cfg)
		n := logs.FilterMessageSnippet("unencrypted").Len()
		if (n > 0) != tc.warn {
			t.Errorf("endpoint %s, token_url %s: %d warnings, want warning %v", tc.endpoint, tc.tokenURL, n, tc.warn)
		}
	}
}
