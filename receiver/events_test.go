package receiver

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestAcceptsValidSET(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token()
	c := claims(h.clock.Now(), "jti-1")
	resp, body := h.push(tok, h.set(c), nil)
	if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
		t.Fatalf("got %d %q, want 202 with an empty body", resp.StatusCode, body)
	}
	st := h.r.Stats()
	if st.Accepted != 1 || st.Duplicates != 0 || len(st.Violations) != 0 || st.Events[eventType] != 1 || st.Responses["202"] != 1 {
		t.Fatalf("stats %+v", st)
	}
	rec, ok := h.r.Lookup("jti-1")
	if !ok || string(rec.Claims) != string(mustJSON(t, c)) || rec.Alg != "RS256" || rec.KeyID != "k1" || rec.Txn != "txn-jti-1" {
		t.Fatalf("record %+v, %v", rec, ok)
	}
}

// TestViolations covers every violation kind and every RFC 8935 err code
// the events endpoint can answer with.
func TestViolations(t *testing.T) {
	type tc struct {
		name   string
		cfg    func(*Config)
		claims func(c map[string]any)  // edits valid claims
		jws    func(h *harness) string // replaces the SET entirely
		req    func(r *http.Request)   // edits the request
		status int                     // want
		err    string                  // want RFC 8935 err ("" for no body)
		kind   string                  // want violation counted
		warn   string                  // want warning counted
	}
	other := newKey(t, jose.ES256, "k1") // same kid, different key
	cases := []tc{
		{name: "method", req: func(r *http.Request) { r.Method = http.MethodPut }, status: 405, kind: VMethod},
		{name: "source denied", cfg: func(c *Config) { c.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} },
			status: 403, err: ErrAccessDenied, kind: VSourceDenied},
		{name: "source allowed", cfg: func(c *Config) {
			c.AllowFrom = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
		},
			status: 202},
		{name: "token in url", req: func(r *http.Request) { r.URL.RawQuery = "access_token=x" }, status: 400, err: ErrInvalidRequest, kind: VTokenInURL},
		{name: "token missing", req: func(r *http.Request) { r.Header.Del("Authorization") }, status: 401, err: ErrAuthenticationFailed, kind: VTokenMissing},
		{name: "basic instead of bearer", req: func(r *http.Request) { r.SetBasicAuth(testClient, testSecret) }, status: 401, err: ErrAuthenticationFailed, kind: VTokenMissing},
		{name: "token invalid", req: func(r *http.Request) { r.Header.Set("Authorization", "Bearer forged") }, status: 401, err: ErrAuthenticationFailed, kind: VTokenInvalid},
		{name: "content type jwt", req: func(r *http.Request) { r.Header.Set("Content-Type", "application/jwt") }, status: 400, err: ErrInvalidRequest, kind: VContentType},
		{name: "content type missing", req: func(r *http.Request) { r.Header.Del("Content-Type") }, status: 400, err: ErrInvalidRequest, kind: VContentType},
		{name: "accept missing", req: func(r *http.Request) { r.Header.Del("Accept") }, status: 400, err: ErrInvalidRequest, kind: VAcceptMissing},
		{name: "accept html", req: func(r *http.Request) { r.Header.Set("Accept", "text/html, application/json;q=0") }, status: 400, err: ErrInvalidRequest, kind: VAcceptUnacceptable},
		{name: "body too large", cfg: func(c *Config) { c.MaxBodyBytes = 100 }, status: 400, err: ErrInvalidRequest, kind: VBodyTooLarge},
		{name: "not a jws", jws: func(*harness) string { return "hello" }, status: 400, err: ErrInvalidRequest, kind: VJWSMalformed},
		{name: "header not json", jws: func(*harness) string { return "bm90IGpzb24.e30.c2ln" }, status: 400, err: ErrInvalidRequest, kind: VJWSMalformed},
		{name: "alg none", jws: func(h *harness) string {
			hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"secevent+jwt"}`))
			return hdr + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, claims(h.clock.Now(), "j"))) + "."
		}, status: 400, err: ErrInvalidRequest, kind: VAlgNotAllowed},
		{name: "alg RS384 not allowed", jws: func(h *harness) string {
			k := h.key
			k.alg = jose.RS384
			return sign(t, k, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}, status: 400, err: ErrInvalidRequest, kind: VAlgNotAllowed},
		{name: "typ JWT", jws: func(h *harness) string { return sign(t, h.key, "JWT", mustJSON(t, claims(h.clock.Now(), "j"))) },
			status: 400, err: ErrInvalidRequest, kind: VTyp},
		{name: "typ media type", jws: func(h *harness) string {
			return sign(t, h.key, "application/secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}, status: 400, err: ErrInvalidRequest, kind: VTyp},
		{name: "typ missing", jws: func(h *harness) string { return sign(t, h.key, "", mustJSON(t, claims(h.clock.Now(), "j"))) },
			status: 400, err: ErrInvalidRequest, kind: VTyp},
		{name: "kid unknown", jws: func(h *harness) string {
			k := h.key
			k.kid = "rotated-away"
			return sign(t, k, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}, status: 400, err: ErrInvalidKey, kind: VKIDUnknown},
		{name: "no key for alg", jws: func(h *harness) string {
			return sign(t, other, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}, status: 400, err: ErrInvalidKey, kind: VKIDUnknown},
		{name: "signature by another key", jws: func(h *harness) string {
			good := sign(t, h.key, "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
			parts := strings.Split(good, ".")
			forged := base64.RawURLEncoding.EncodeToString(mustJSON(t, claims(h.clock.Now(), "forged")))
			return parts[0] + "." + forged + "." + parts[2]
		}, status: 400, err: ErrInvalidKey, kind: VSignature},
		{name: "claims not an object", jws: func(h *harness) string { return sign(t, h.key, "secevent+jwt", []byte(`[1,2]`)) },
			status: 400, err: ErrInvalidRequest, kind: VClaimsMalformed},
		{name: "iss missing", claims: func(c map[string]any) { delete(c, "iss") }, status: 400, err: ErrInvalidIssuer, kind: VISSMissing},
		{name: "iss wrong", claims: func(c map[string]any) { c["iss"] = "https://evil.example/" }, status: 400, err: ErrInvalidIssuer, kind: VISSMismatch},
		{name: "aud missing", claims: func(c map[string]any) { delete(c, "aud") }, status: 400, err: ErrInvalidAudience, kind: VAudMissing},
		{name: "aud wrong", claims: func(c map[string]any) { c["aud"] = "https://other.example/" }, status: 400, err: ErrInvalidAudience, kind: VAudMismatch},
		{name: "aud array without us", claims: func(c map[string]any) { c["aud"] = []string{"a", "b"} }, status: 400, err: ErrInvalidAudience, kind: VAudMismatch},
		{name: "aud array with us", claims: func(c map[string]any) { c["aud"] = []string{"a", testAudience} }, status: 202},
		{name: "aud number", claims: func(c map[string]any) { c["aud"] = 7 }, status: 400, err: ErrInvalidAudience, kind: VAudMismatch},
		{name: "iat missing", claims: func(c map[string]any) { delete(c, "iat") }, status: 400, err: ErrInvalidRequest, kind: VIATMissing},
		{name: "iat fraction", claims: func(c map[string]any) { c["iat"] = 1764216000.5 }, status: 400, err: ErrInvalidRequest, kind: VIATNotInteger},
		{name: "iat string", claims: func(c map[string]any) { c["iat"] = "1764216000" }, status: 400, err: ErrInvalidRequest, kind: VIATNotInteger},
		{name: "iat millis", claims: func(c map[string]any) { c["iat"] = newClock().Now().UnixMilli() }, status: 400, err: ErrInvalidRequest, kind: VIATMillis},
		{name: "iat future", claims: func(c map[string]any) { c["iat"] = newClock().Now().Add(5 * time.Minute).Unix() }, status: 400, err: ErrInvalidRequest, kind: VIATFuture},
		{name: "iat within skew", claims: func(c map[string]any) { c["iat"] = newClock().Now().Add(30 * time.Second).Unix() }, status: 202},
		{name: "old iat is fine", claims: func(c map[string]any) { c["iat"] = newClock().Now().Add(-72 * time.Hour).Unix() }, status: 202},
		{name: "jti missing", claims: func(c map[string]any) { delete(c, "jti") }, status: 400, err: ErrInvalidRequest, kind: VJTIMissing},
		{name: "jti empty", claims: func(c map[string]any) { c["jti"] = " " }, status: 400, err: ErrInvalidRequest, kind: VJTIMissing},
		{name: "jti number", claims: func(c map[string]any) { c["jti"] = 42 }, status: 400, err: ErrInvalidRequest, kind: VJTIMissing},
		{name: "events missing", claims: func(c map[string]any) { delete(c, "events") }, status: 400, err: ErrInvalidRequest, kind: VEventsMissing},
		{name: "events empty", claims: func(c map[string]any) { c["events"] = map[string]any{} }, status: 400, err: ErrInvalidRequest, kind: VEventsInvalid},
		{name: "events array", claims: func(c map[string]any) { c["events"] = []any{eventType} }, status: 400, err: ErrInvalidRequest, kind: VEventsInvalid},
		{name: "event not object", claims: func(c map[string]any) { c["events"] = map[string]any{eventType: true} }, status: 400, err: ErrInvalidRequest, kind: VEventNotObject},
		{name: "empty event object is fine", claims: func(c map[string]any) { c["events"] = map[string]any{eventType: map[string]any{}} }, status: 202},
		{name: "ssf: sub_id missing", cfg: ssfMode, claims: func(c map[string]any) { delete(c, "sub_id") }, status: 400, err: ErrInvalidRequest, kind: VSubIDMissing},
		{name: "ssf: sub present", cfg: ssfMode, claims: func(c map[string]any) { c["sub"] = "alice" }, status: 400, err: ErrInvalidRequest, kind: VSubPresent},
		{name: "ssf: exp present", cfg: ssfMode, claims: func(c map[string]any) { c["exp"] = newClock().Now().Unix() + 60 }, status: 400, err: ErrInvalidRequest, kind: VExpPresent},
		{name: "sub_id extra member", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "email", "email": "a@example.com", "name": "Alice"}
		}, status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "sub_id unknown format", claims: func(c map[string]any) { c["sub_id"] = map[string]any{"format": "nickname", "nickname": "al"} },
			status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "sub_id complex", cfg: ssfMode, claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex",
				"user":    map[string]any{"format": "email", "email": "a@example.com"},
				"session": map[string]any{"format": "opaque", "id": "s1"}}
		}, status: 202},
		{name: "sub_id nested aliases", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "aliases", "identifiers": []any{map[string]any{"format": "aliases", "identifiers": []any{}}}}
		}, status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "sub_id aliases", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "aliases", "identifiers": []any{
				map[string]any{"format": "email", "email": "a@example.com"},
				map[string]any{"format": "phone_number", "phone_number": "+447700900123"}}}
		}, status: 202},
		{name: "sub_id member missing", claims: func(c map[string]any) { c["sub_id"] = map[string]any{"format": "iss_sub", "iss": testIssuer} },
			status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "sub_id not an object", claims: func(c map[string]any) { c["sub_id"] = "alice" }, status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "sub_id ip-addresses", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "ip-addresses", "ip-addresses": []any{"192.0.2.1"}}
		}, status: 202},
		{name: "sub_id complex with another member name (SSF 1.0 §3.3 allows it)", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex", "planet": map[string]any{"format": "opaque", "id": "x"}}
		}, status: 202},
		{name: "sub_id complex member not an identifier", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex", "user": "alice"}
		}, status: 400, err: ErrInvalidRequest, kind: VSubIDInvalid},
		{name: "in_event: subject missing", cfg: inEventMode, claims: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{"reason": "x"}}
		}, status: 400, err: ErrInvalidRequest, kind: VSubjectMissing},
		{name: "in_event: legacy subject_type (GOV.UK example)", cfg: inEventMode, claims: func(c map[string]any) {
			delete(c, "sub_id")
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/risc/event-type/account-disabled": map[string]any{
				"subject": map[string]any{"subject_type": "iss-sub", "iss": testIssuer, "sub": "7375626A656374"},
				"reason":  "hijacking"}}
		}, status: 202, warn: WSubjectTypeLegacy},
		{name: "in_event: subject extra member", cfg: inEventMode, claims: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{"subject": map[string]any{"format": "opaque", "id": "x", "extra": 1}}}
		}, status: 400, err: ErrInvalidRequest, kind: VSubjectInvalid},
		{name: "either: no subject at all", claims: func(c map[string]any) {
			delete(c, "sub_id")
			c["events"] = map[string]any{eventType: map[string]any{}}
		}, status: 400, err: ErrInvalidRequest, kind: VSubjectMissing},
		{name: "txn not a string", claims: func(c map[string]any) { c["txn"] = 12 }, status: 400, err: ErrInvalidRequest, kind: VTxnInvalid},
		{name: "toe fraction", claims: func(c map[string]any) { c["toe"] = 1.5 }, status: 400, err: ErrInvalidRequest, kind: VToeInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t, c.cfg)
			tok := h.token()
			var jws string
			switch {
			case c.jws != nil:
				jws = c.jws(h)
			default:
				cl := claims(h.clock.Now(), "jti-"+c.name)
				if c.claims != nil {
					c.claims(cl)
				}
				jws = h.set(cl)
			}
			resp, body := h.push(tok, jws, c.req)
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, body)
			}
			st := h.r.Stats()
			if c.err != "" {
				e := rfc8935Error(t, resp, body)
				if e.Err != c.err {
					t.Fatalf("err %q, want %q (%s)", e.Err, c.err, e.Description)
				}
				if st.Rejections[c.err] != 1 {
					t.Fatalf("rejections %v", st.Rejections)
				}
			}
			if c.status == http.StatusAccepted {
				if len(body) != 0 || st.Accepted != 1 {
					t.Fatalf("accepted with body %q, stats %+v", body, st)
				}
			}
			if c.kind != "" && st.Violations[c.kind] != 1 {
				t.Fatalf("violations %v, want %s counted once", st.Violations, c.kind)
			}
			if c.kind == "" && len(st.Violations) != 0 {
				t.Fatalf("unexpected violations %v", st.Violations)
			}
			if (c.warn == "" && len(st.Warnings) != 0) || (c.warn != "" && (len(st.Warnings) != 1 || st.Warnings[c.warn] != 1)) {
				t.Fatalf("warnings %v, want %q", st.Warnings, c.warn)
			}
			if c.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge: %v", resp.Header)
			}
			if c.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != http.MethodPost {
				t.Fatalf("405 without Allow: POST")
			}
		})
	}
}

func TestSmallRSAKeyIsRefused(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Skipf("cannot generate a 1024-bit key here: %v", err)
	}
	k := testKey{alg: jose.RS256, kid: "small", priv: small}
	h := newHarness(t, func(c *Config) { c.Keys = jwks(k) })
	h.key = k
	resp, body := h.push(h.token(), h.set(claims(h.clock.Now(), "s")), nil)
	if e := rfc8935Error(t, resp, body); e.Err != ErrInvalidKey || h.r.Stats().Violations[VKeyTooSmall] != 1 {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
}

func ssfMode(c *Config)     { c.SubjectMode = SubjectSubID }
func inEventMode(c *Config) { c.SubjectMode = SubjectInEvent }

func TestManyViolationsAreAllReported(t *testing.T) {
	h := newHarness(t, nil)
	c := claims(h.clock.Now(), "")
	c["iss"] = "https://evil.example/"
	c["iat"] = h.clock.Now().UnixMilli()
	resp, body := h.push(h.token(), h.set(c), nil)
	e := rfc8935Error(t, resp, body)
	if e.Err != ErrInvalidIssuer {
		t.Fatalf("err %q, want the first violation's code invalid_issuer", e.Err)
	}
	for _, want := range []string{"evil.example", "milliseconds", "jti"} {
		if !strings.Contains(e.Description, want) {
			t.Errorf("description %q lacks %q", e.Description, want)
		}
	}
	st := h.r.Stats()
	if st.Violations[VISSMismatch] != 1 || st.Violations[VIATMillis] != 1 || st.Violations[VJTIMissing] != 1 {
		t.Fatalf("violations %v", st.Violations)
	}
}

func TestDuplicates(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token()
	c := claims(h.clock.Now(), "dup-1")
	jws := h.set(c)
	for i := range 3 {
		// Re-signing gives a different JWS for RSA-PSS/ECDSA; with RS256 it is
		// the same. Either way the claims bytes decide.
		resp, body := h.push(tok, jws, nil)
		if resp.StatusCode != http.StatusAccepted || len(body) != 0 {
			t.Fatalf("push %d: %d %s", i, resp.StatusCode, body)
		}
	}
	st := h.r.Stats()
	if st.Accepted != 1 || st.Duplicates != 2 {
		t.Fatalf("accepted %d duplicates %d, want 1 and 2", st.Accepted, st.Duplicates)
	}
	if rec, _ := h.r.Lookup("dup-1"); rec.Duplicates != 2 {
		t.Fatalf("record duplicates %d", rec.Duplicates)
	}

	// Same jti, different claims: a transmitter bug.
	c["txn"] = "changed"
	resp, body := h.push(tok, h.set(c), nil)
	e := rfc8935Error(t, resp, body)
	if resp.StatusCode != http.StatusBadRequest || e.Err != ErrInvalidRequest || !strings.Contains(e.Description, "different claims") {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	st = h.r.Stats()
	if st.Violations[VJTIReuseMismatch] != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The original record is kept unchanged.
	if rec, _ := h.r.Lookup("dup-1"); rec.Txn != "txn-dup-1" {
		t.Fatalf("record overwritten: %+v", rec)
	}
}

func TestRecordsAreBounded(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxRecords = 2 })
	tok := h.token()
	for _, jti := range []string{"a", "b", "c"} {
		if resp, body := h.push(tok, h.set(claims(h.clock.Now(), jti)), nil); resp.StatusCode != 202 {
			t.Fatalf("%s: %d %s", jti, resp.StatusCode, body)
		}
	}
	got := h.r.Accepted()
	if len(got) != 2 || got[0].JTI != "b" || got[1].JTI != "c" {
		t.Fatalf("records %v", got)
	}
	if st := h.r.Stats(); st.RecordsEvicted != 1 || st.Accepted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNoAuth(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.NoAuth = true; c.ClientID, c.ClientSecret = "", "" })
	if resp, body := h.push("", h.set(claims(h.clock.Now(), "x")), nil); resp.StatusCode != 202 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestStatsAndHealthEndpoints(t *testing.T) {
	h := newHarness(t, nil)
	h.push(h.token(), h.set(claims(h.clock.Now(), "s1")), nil)
	resp, body := do(t, mustRequest(t, http.MethodGet, h.srv.URL+"/stats"))
	if resp.StatusCode != 200 {
		t.Fatalf("stats %d", resp.StatusCode)
	}
	var st Stats
	if err := jsonUnmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.Accepted != 1 || st.TokenRequests != 1 || st.TokensIssued != 1 || st.Requests != 1 {
		t.Fatalf("stats %s", body)
	}
	resp, body = do(t, mustRequest(t, http.MethodGet, h.srv.URL+"/healthz"))
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "ok" {
		t.Fatalf("healthz %d %q", resp.StatusCode, body)
	}
}

func TestConfigValidation(t *testing.T) {
	base := func() Config {
		return Config{ClientID: "c", ClientSecret: "s", Issuer: "i", Audience: "a", Keys: jwks(newKey(t, jose.ES256, "k"))}
	}
	cases := map[string]func(*Config){
		"no client":        func(c *Config) { c.ClientID = "" },
		"no issuer":        func(c *Config) { c.Issuer = "" },
		"no audience":      func(c *Config) { c.Audience = "" },
		"no keys":          func(c *Config) { c.Keys = nil },
		"two key sources":  func(c *Config) { c.JWKSURL = "http://x" },
		"hmac alg":         func(c *Config) { c.Algorithms = []jose.SignatureAlgorithm{jose.HS256} },
		"bad subject mode": func(c *Config) { c.SubjectMode = "top" },
		"rate above 1":     func(c *Config) { c.FailRate = 1.5 },
		"negative latency": func(c *Config) { c.Latency = -time.Second },
	}
	for name, mod := range cases {
		cfg := base()
		mod(&cfg)
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	if _, err := New(base(), nil); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
