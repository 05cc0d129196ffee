package ssf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/setrelay/setrelay/ssf"
)

// authServer is an OAuth authorization server's signing side: a key and
// its JWKS served over HTTP, issuing RFC 9068 access tokens.
type authServer struct {
	key jwk.Key
	srv *httptest.Server
}

func newAuthServer(t *testing.T) *authServer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, "as-1")
	_ = key.Set(jwk.AlgorithmKey, jwa.ES256())
	pub, err := key.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	body, _ := json.Marshal(set)
	a := &authServer{key: key}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authServer) token(t *testing.T, key jwk.Key, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJWTAccessTokens(t *testing.T) {
	as := newAuthServer(t)
	x := newTX(t, txOptions{JWT: &ssf.JWTAuth{
		Issuer: "https://as.example/", JWKSURI: as.srv.URL + "/jwks", Audience: "https://tx.example/", Scope: "ssf",
		ClientAudience: map[string][]string{"okta-1": {"https://okta.example/"}},
	}})
	now := time.Now()
	good := map[string]any{
		"iss": "https://as.example/", "aud": "https://tx.example/", "client_id": "okta-1", "sub": "okta-1",
		"scope": "ssf ssf.read ssf.manage ssf.poll", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "t1",
	}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}

	// A good token creates a stream whose aud is the client's.
	var st map[string]any
	x.must(201, "POST", "/ssf/streams", as.token(t, as.key, good), map[string]any{"events_requested": []string{caepType}}, &st)
	if st["aud"] != "https://okta.example/" {
		t.Fatalf("aud %v", st["aud"])
	}
	id := st["stream_id"].(string)
	// It is that client's alone: the static client a does not see it.
	x.must(404, "GET", "/ssf/streams?stream_id="+id, tokenA, nil, nil)
	x.must(200, "GET", "/ssf/streams?stream_id="+id, as.token(t, as.key, good), nil, nil)

	other := newAuthServer(t).key
	noClient := with("client_id", nil)
	delete(noClient, "sub")
	for name, tok := range map[string]string{
		"wrong issuer":   as.token(t, as.key, with("iss", "https://evil.example/")),
		"wrong audience": as.token(t, as.key, with("aud", "https://someone-else.example/")),
		"expired":        as.token(t, as.key, with("exp", now.Add(-time.Hour).Unix())),
		"not yet valid":  as.token(t, as.key, with("nbf", now.Add(time.Hour).Unix())),
		"other key":      as.token(t, other, good),
		"no client":      as.token(t, as.key, noClient),
	} {
		if status, b, _ := x.do("GET", "/ssf/streams", tok, nil); status != 401 {
			t.Errorf("%s: %d %s, want 401", name, status, b)
		}
	}
	// Without the transmitter's scope, or without the endpoint's: 403.
	if status, _, _ := x.do("GET", "/ssf/streams", as.token(t, as.key, with("scope", "ssf.read")), nil); status != 403 {
		t.Errorf("without the ssf scope: %d, want 403", status)
	}
	if status, _, _ := x.do("POST", "/ssf/verify", as.token(t, as.key, with("scope", "ssf ssf.read")), map[string]any{"stream_id": id}); status != 403 {
		t.Errorf("without ssf.manage: %d, want 403", status)
	}
}

// tokenTyp signs claims with the JOSE header typ set to typ, or with no
// typ at all when typ is "" (a bare JWS over the claims).
func (a *authServer) tokenTyp(t *testing.T, claims map[string]any, typ string) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	hdrs := jws.NewHeaders()
	if typ != "" {
		_ = hdrs.Set(jws.TypeKey, typ)
	}
	b, err := jws.Sign(payload, jws.WithKey(jwa.ES256(), a.key, jws.WithProtectedHeaders(hdrs)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// RFC 9068 §4: the resource server "MUST verify that the typ header value
// is at+jwt or application/at+jwt". setrelay also takes the generic JWT
// (and no typ), which many authorization servers still issue, but refuses
// a JWT typed as something else that the same server may sign with the
// same key for the same audience: a SET, a logout token, a DPoP proof is
// never an access token.
func TestJWTAccessTokenTyp(t *testing.T) {
	as := newAuthServer(t)
	x := newTX(t, txOptions{JWT: &ssf.JWTAuth{Issuer: "https://as.example/", JWKSURI: as.srv.URL + "/jwks", Audience: "https://tx.example/"}})
	now := time.Now()
	claims := map[string]any{
		"iss": "https://as.example/", "aud": "https://tx.example/", "client_id": "c1",
		"scope": "ssf.read ssf.manage ssf.poll", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "t1",
	}
	for typ, want := range map[string]int{
		"at+jwt": 200, "application/at+jwt": 200, "AT+JWT": 200, "JWT": 200, "": 200,
		"secevent+jwt": 401, "logout+jwt": 401, "dpop+jwt": 401, "application/secevent+jwt": 401,
	} {
		status, b, hdr := x.do("GET", "/ssf/streams", as.tokenTyp(t, claims, typ), nil)
		if status != want {
			t.Errorf("typ %q: %d %s, want %d", typ, status, b, want)
		}
		if want == 401 && !strings.Contains(hdr.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("typ %q: challenge %q, want invalid_token", typ, hdr.Get("WWW-Authenticate"))
		}
	}
}
