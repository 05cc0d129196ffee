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
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// jwxSign signs a payload with lestrrat-go/jwx, a JOSE library setrelay
// does not use to sign, so that the receiver is judged on SETs neither
// side's own code produced. typ "" leaves typ out.
func jwxSign(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid, typ string, payload []byte) string {
	t.Helper()
	hdr := jws.NewHeaders()
	if typ != "" {
		if err := hdr.Set(jws.TypeKey, typ); err != nil {
			t.Fatal(err)
		}
	}
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// jwxSET signs claims with the harness key through jwx.
func (h *harness) jwxSET(payload []byte) string {
	h.t.Helper()
	return jwxSign(h.t, jwa.RS256(), h.key.priv, h.key.kid, "secevent+jwt", payload)
}

// injectMember puts a raw `"name":value,` right after the opening brace of
// the object that starts at marker (or of the whole document when marker
// is ""), to repeat a member name, which no JSON encoder will produce.
func injectMember(t testing.TB, doc []byte, marker, member string) []byte {
	t.Helper()
	s := string(doc)
	at := 0
	if marker != "" {
		at = strings.Index(s, marker)
		if at < 0 {
			t.Fatalf("marker %q not in %s", marker, s)
		}
		at += len(marker)
	}
	brace := strings.IndexByte(s[at:], '{')
	if brace < 0 {
		t.Fatalf("no object after %q", marker)
	}
	at += brace + 1
	return []byte(s[:at] + member + "," + s[at:])
}

const (
	caepCredentialChange = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	riscIdentifierChange = "https://schemas.openid.net/secevent/risc/event-type/identifier-changed"
	riscAccountDisabled  = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
)

// TestEveryRule crafts one SET (or one request) per rule of Rules, signs it
// with jwx, pushes it to a receiver behind a real HTTP server and checks
// the exact answer: the status, the RFC 8935 err, a description that names
// the rule and its section, and the counter of that rule alone. Warnings
// are pushed twice: as configured (202, counted as a warning) and under
// Strict (400 invalid_request). A rule without a case fails the test.
func TestEveryRule(t *testing.T) {
	type tc struct {
		kind    string
		name    string
		cfg     func(*Config)
		before  func(h *harness)        // after the token is fetched
		claims  func(c map[string]any)  // edits valid claims
		payload func(b []byte) []byte   // edits the encoded claims
		jws     func(h *harness) string // replaces the SET entirely
		req     func(r *http.Request)   // edits the request
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	ssf := func(c *Config) { c.SubjectMode = SubjectSubID }
	inEvent := func(c *Config) { c.SubjectMode = SubjectInEvent }
	credentialChange := func(m map[string]any) func(c map[string]any) {
		return func(c map[string]any) {
			ev := map[string]any{"credential_type": "password", "change_type": "update"}
			for k, v := range m {
				if v == nil {
					delete(ev, k)
				} else {
					ev[k] = v
				}
			}
			c["events"] = map[string]any{caepCredentialChange: ev}
		}
	}
	cases := []tc{
		{kind: VMethod, req: func(r *http.Request) { r.Method = http.MethodPut }},
		{kind: VSourceDenied, cfg: func(c *Config) { c.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }},
		{kind: VTokenInURL, req: func(r *http.Request) { r.URL.RawQuery = "access_token=x" }},
		{kind: VTokenMissing, req: func(r *http.Request) { r.Header.Del("Authorization") }},
		{kind: VTokenInvalid, req: func(r *http.Request) { r.Header.Set("Authorization", "Bearer forged") }},
		{kind: VTokenExpired, before: func(h *harness) { h.clock.Add(2 * time.Hour) }},
		{kind: VTokenRevoked, before: func(h *harness) { h.r.RevokeToken() }},
		{kind: VContentType, req: func(r *http.Request) { r.Header.Set("Content-Type", "application/jwt") }},
		{kind: VAcceptMissing, req: func(r *http.Request) { r.Header.Del("Accept") }},
		{kind: VAcceptUnacceptable, req: func(r *http.Request) { r.Header.Set("Accept", "text/html") }},
		{kind: VBodyTooLarge, cfg: func(c *Config) { c.MaxBodyBytes = 100 }},
		{kind: VJWSMalformed, jws: func(*harness) string { return "only.two" }},
		{kind: VAlgNotAllowed, name: "HS256", jws: func(h *harness) string {
			return jwxSign(t, jwa.HS256(), []byte("a shared secret of 32 bytes!!!!!"), "k1", "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}},
		{kind: VTyp, name: "typ JWT", jws: func(h *harness) string {
			return jwxSign(t, jwa.RS256(), h.key.priv, "k1", "JWT", mustJSON(t, claims(h.clock.Now(), "j")))
		}},
		{kind: VTyp, name: "typ missing", jws: func(h *harness) string {
			return jwxSign(t, jwa.RS256(), h.key.priv, "k1", "", mustJSON(t, claims(h.clock.Now(), "j")))
		}},
		{kind: VKIDUnknown, jws: func(h *harness) string {
			return jwxSign(t, jwa.RS256(), h.key.priv, "rotated-away", "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}},
		{kind: VSignature, jws: func(h *harness) string {
			parts := strings.Split(h.jwxSET(mustJSON(t, claims(h.clock.Now(), "j"))), ".")
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(mustJSON(t, claims(h.clock.Now(), "forged"))) + "." + parts[2]
		}},
		{kind: VKeyTooSmall, cfg: func(c *Config) {
			c.Keys = &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &small.PublicKey, KeyID: "small", Algorithm: "RS256", Use: "sig"}}}
		}, jws: func(h *harness) string {
			return jwxSign(t, jwa.RS256(), small, "small", "secevent+jwt", mustJSON(t, claims(h.clock.Now(), "j")))
		}},
		{kind: VClaimsMalformed, payload: func([]byte) []byte { return []byte(`["not", "an", "object"]`) }},
		{kind: VClaimsDuplicate, payload: func(b []byte) []byte { return injectMember(t, b, "", `"txn":"another"`) }},
		{kind: VISSMissing, claims: func(c map[string]any) { delete(c, "iss") }},
		{kind: VISSMismatch, claims: func(c map[string]any) { c["iss"] = "https://evil.example/" }},
		{kind: VAudMissing, claims: func(c map[string]any) { delete(c, "aud") }},
		{kind: VAudMismatch, claims: func(c map[string]any) { c["aud"] = []string{"https://other.example/"} }},
		{kind: VIATMissing, claims: func(c map[string]any) { delete(c, "iat") }},
		{kind: VIATNotInteger, claims: func(c map[string]any) { c["iat"] = "1764216000" }},
		{kind: VIATMillis, claims: func(c map[string]any) { c["iat"] = newClock().Now().UnixMilli() }},
		{kind: VIATFuture, claims: func(c map[string]any) { c["iat"] = newClock().Now().Add(5 * time.Minute).Unix() }},
		{kind: VJTIMissing, claims: func(c map[string]any) { delete(c, "jti") }},
		{kind: VJTIReuseMismatch, before: func(h *harness) {
			resp, body := h.push(h.token(), h.jwxSET(mustJSON(t, claims(h.clock.Now(), "reused"))), nil)
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("first SET: %d %s", resp.StatusCode, body)
			}
		}, claims: func(c map[string]any) { c["jti"] = "reused"; c["txn"] = "a corrected SET" }},
		{kind: VEventsMissing, claims: func(c map[string]any) { delete(c, "events") }},
		{kind: VEventsInvalid, claims: func(c map[string]any) { c["events"] = map[string]any{} }},
		{kind: VEventTypeInvalid, claims: func(c map[string]any) { c["events"] = map[string]any{"session-revoked": map[string]any{}} }},
		{kind: VEventNotObject, claims: func(c map[string]any) { c["events"] = map[string]any{eventType: "revoked"} }},
		{kind: VEventsDuplicate, payload: func(b []byte) []byte { return injectMember(t, b, `"events":`, `"`+eventType+`":{}`) }},
		{kind: VSubPresent, claims: func(c map[string]any) { c["sub"] = "x" }},
		{kind: VExpPresent, claims: func(c map[string]any) { c["exp"] = int64(9999999999) }},
		{kind: VSubIDMissing, cfg: ssf, claims: func(c map[string]any) { delete(c, "sub_id") }},
		{kind: VSubIDInvalid, name: "unknown format", claims: func(c map[string]any) { c["sub_id"] = map[string]any{"format": "nickname", "nickname": "al"} }},
		{kind: VSubIDInvalid, name: "extra member", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "email", "email": "a@example.com", "name": "Alice"}
		}},
		{kind: VSubIDInvalid, name: "email not an address", claims: func(c map[string]any) { c["sub_id"] = map[string]any{"format": "email", "email": "alice"} }},
		{kind: VSubIDInvalid, name: "phone not E.164", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "phone_number", "phone_number": "07700 900123"}
		}},
		{kind: VSubIDInvalid, name: "complex without members", claims: func(c map[string]any) { c["sub_id"] = map[string]any{"format": "complex"} }},
		{kind: VSubIDInvalid, name: "complex inside complex", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex", "user": map[string]any{"format": "complex",
				"device": map[string]any{"format": "opaque", "id": "d"}}}
		}},
		{kind: VSubIDInvalid, name: "complex member repeated", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex", "user": map[string]any{"format": "opaque", "id": "u1"}}
		}, payload: func(b []byte) []byte {
			return injectMember(t, b, `"sub_id":`, `"user":{"format":"opaque","id":"u2"}`)
		}},
		{kind: VSubIDInvalid, name: "complex member not simple", claims: func(c map[string]any) {
			c["sub_id"] = map[string]any{"format": "complex", "tenant": map[string]any{"format": "opaque"}}
		}},
		{kind: VSubjectMissing, cfg: inEvent, claims: func(c map[string]any) { c["events"] = map[string]any{eventType: map[string]any{}} }},
		{kind: VSubjectInvalid, claims: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{"subject": map[string]any{"format": "opaque", "id": "x", "extra": 1}}}
		}},
		{kind: VTxnInvalid, claims: func(c map[string]any) { c["txn"] = 8675309 }},
		{kind: VToeInvalid, claims: func(c map[string]any) { c["toe"] = "yesterday" }},

		{kind: WSubIDMissing, claims: func(c map[string]any) { delete(c, "sub_id") }},
		{kind: WTxnMissing, claims: func(c map[string]any) { delete(c, "txn") }},
		{kind: WEventsMultiple, claims: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{}, riscAccountDisabled: map[string]any{"reason": "hijacking"}}
		}},
		{kind: WEventTypeUnknown, claims: func(c map[string]any) {
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/caep/event-type/session-revokd": map[string]any{}}
		}},
		{kind: WEventMemberMissing, claims: credentialChange(map[string]any{"change_type": nil})},
		{kind: WEventMemberType, claims: credentialChange(map[string]any{"event_timestamp": "yesterday"})},
		{kind: WEventMemberType, name: "token-claims-change with no claims", claims: func(c map[string]any) {
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/caep/event-type/token-claims-change": map[string]any{"claims": map[string]any{}}}
		}},
		{kind: WEventMemberType, name: "reason_user key not a language tag", claims: credentialChange(map[string]any{"reason_user": map[string]any{"en_GB": "x"}})},
		{kind: WEventMemberType, name: "reason_admin a plain string", claims: credentialChange(map[string]any{"reason_admin": "a string, not an object"})},
		{kind: WEventMemberValue, claims: credentialChange(map[string]any{"credential_type": "bogus"})},
		{kind: WSubjectTypeLegacy, cfg: inEvent, claims: func(c map[string]any) {
			delete(c, "sub_id")
			c["events"] = map[string]any{riscAccountDisabled: map[string]any{
				"subject": map[string]any{"subject_type": "iss-sub", "iss": testIssuer, "sub": "7375626A656374"}, "reason": "hijacking"}}
		}},
		{kind: WSubjectFormat, claims: func(c map[string]any) {
			c["events"] = map[string]any{riscIdentifierChange: map[string]any{"new-value": "b@example.com"}}
			c["sub_id"] = map[string]any{"format": "iss_sub", "iss": testIssuer, "sub": "123"}
		}},
		{kind: WSubjectFormat, name: "stream-updated about a user", claims: func(c map[string]any) {
			c["events"] = map[string]any{"https://schemas.openid.net/secevent/ssf/event-type/stream-updated": map[string]any{"status": "paused"}}
			c["sub_id"] = map[string]any{"format": "email", "email": "a@example.com"}
		}},
	}

	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.kind] = true
	}
	for _, r := range Rules() {
		if !covered[r.Kind] {
			t.Errorf("rule %s (%s) has no case", r.Kind, r.Section)
		}
	}

	run := func(t *testing.T, c tc, strict bool) {
		rule := rulesByKind[c.kind]
		h := newHarness(t, func(cfg *Config) {
			cfg.Strict = strict
			if c.cfg != nil {
				c.cfg(cfg)
			}
		})
		tok := h.token()
		if c.before != nil {
			c.before(h)
		}
		var set string
		switch {
		case c.jws != nil:
			set = c.jws(h)
		default:
			cl := claims(h.clock.Now(), "jti-"+c.kind)
			if c.claims != nil {
				c.claims(cl)
			}
			b := mustJSON(t, cl)
			if c.payload != nil {
				b = c.payload(b)
			}
			set = h.jwxSET(b)
		}
		before := h.r.Stats()
		resp, body := h.push(tok, set, c.req)
		st := h.r.Stats()
		warning := rule.Severity == Warn
		if warning && !strict {
			if resp.StatusCode != http.StatusAccepted {
				t.Fatalf("status %d, want 202 with a warning; body %s", resp.StatusCode, body)
			}
			if len(st.Warnings) != 1 || st.Warnings[c.kind] < 1 || len(st.Violations) != 0 {
				t.Fatalf("warnings %v, violations %v; want only warning %s", st.Warnings, st.Violations, c.kind)
			}
			return
		}
		wantStatus, wantErr := rule.Status, rule.Err
		if warning {
			wantStatus, wantErr = http.StatusBadRequest, ErrInvalidRequest
		}
		if resp.StatusCode != wantStatus {
			t.Fatalf("status %d, want %d; body %s", resp.StatusCode, wantStatus, body)
		}
		if wantErr != "" {
			e := rfc8935Error(t, resp, body)
			if e.Err != wantErr {
				t.Fatalf("err %q, want %q (%s)", e.Err, wantErr, e.Description)
			}
			if !strings.Contains(e.Description, c.kind+" ("+rule.Section+"): ") {
				t.Fatalf("description %q does not name rule %s (%s)", e.Description, c.kind, rule.Section)
			}
		}
		counted := st.Violations
		if warning {
			counted = st.Warnings
		}
		if counted[c.kind]-before.Violations[c.kind] != 1 {
			t.Fatalf("violations %v, warnings %v: want %s counted once", st.Violations, st.Warnings, c.kind)
		}
		for k := range st.Violations {
			if k != c.kind && st.Violations[k] != before.Violations[k] {
				t.Fatalf("violations %v: %s counted besides %s", st.Violations, k, c.kind)
			}
		}
		if st.Accepted != before.Accepted {
			t.Fatalf("a rejected SET was counted as accepted: %+v", st)
		}
	}
	for _, c := range cases {
		name := c.kind
		if c.name != "" {
			name += "/" + c.name
		}
		t.Run(name, func(t *testing.T) { run(t, c, false) })
		if rulesByKind[c.kind].Severity == Warn {
			t.Run(name+"/strict", func(t *testing.T) { run(t, c, true) })
		}
	}
}

// TestIssueProbes replays the three probes of the issue that asked for the
// full profile, against a receiver with the default configuration: sub and
// exp are rejected, two unrelated events are a warning (a rejection under
// Strict), a bogus credential_type is a warning.
func TestIssueProbes(t *testing.T) {
	type probe struct {
		name   string
		strict bool
		edit   func(c map[string]any)
		status int
		kind   string
	}
	for _, p := range []probe{
		{name: "sub", edit: func(c map[string]any) { c["sub"] = "x" }, status: 400, kind: VSubPresent},
		{name: "exp", edit: func(c map[string]any) { c["exp"] = int64(9999999999) }, status: 400, kind: VExpPresent},
		{name: "two events", edit: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{}, caepCredentialChange: map[string]any{"credential_type": "password", "change_type": "update"}}
		}, status: 202, kind: WEventsMultiple},
		{name: "two events, strict", strict: true, edit: func(c map[string]any) {
			c["events"] = map[string]any{eventType: map[string]any{}, caepCredentialChange: map[string]any{"credential_type": "password", "change_type": "update"}}
		}, status: 400, kind: WEventsMultiple},
		{name: "bogus credential_type", edit: func(c map[string]any) {
			c["events"] = map[string]any{caepCredentialChange: map[string]any{"credential_type": "bogus", "change_type": "update"}}
		}, status: 202, kind: WEventMemberValue},
	} {
		t.Run(p.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) { c.Strict = p.strict })
			c := claims(h.clock.Now(), "probe")
			p.edit(c)
			resp, body := h.push(h.token(), h.jwxSET(mustJSON(t, c)), nil)
			if resp.StatusCode != p.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, p.status, body)
			}
			st := h.r.Stats()
			if p.status == 400 {
				e := rfc8935Error(t, resp, body)
				if e.Err != ErrInvalidRequest || !strings.HasPrefix(e.Description, p.kind) {
					t.Fatalf("answer %+v, want invalid_request naming %s", e, p.kind)
				}
			}
			if rulesByKind[p.kind].Severity == Warn {
				if st.Warnings[p.kind] != 1 {
					t.Fatalf("warnings %v, want %s", st.Warnings, p.kind)
				}
			} else if st.Violations[p.kind] != 1 {
				t.Fatalf("violations %v, want %s", st.Violations, p.kind)
			}
		})
	}
}

// TestAlternativeEventURIs: SSF 1.0 §4.2.1 allows several events only as
// alternative URIs of one event type, such as RISC's deprecated
// sessions-revoked beside CAEP's session-revoked; those draw no warning.
func TestAlternativeEventURIs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Strict = true })
	c := claims(h.clock.Now(), "alternatives")
	c["events"] = map[string]any{
		eventType: map[string]any{},
		"https://schemas.openid.net/secevent/risc/event-type/sessions-revoked": map[string]any{},
	}
	if resp, body := h.push(h.token(), h.jwxSET(mustJSON(t, c)), nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if st := h.r.Stats(); len(st.Warnings) != 0 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestAgreedSubjectFormat: a proprietary subject identifier format is
// rejected unless it is agreed with the receiver (SSF 1.0 §3.4), and then
// its members are not checked.
func TestAgreedSubjectFormat(t *testing.T) {
	for _, agreed := range []bool{false, true} {
		h := newHarness(t, func(c *Config) {
			if agreed {
				c.SubjectFormats = []string{"catalog_item"}
			}
		})
		c := claims(h.clock.Now(), "proprietary")
		c["sub_id"] = map[string]any{"format": "catalog_item", "catalog_id": "c0384/winter/2354122"}
		resp, body := h.push(h.token(), h.jwxSET(mustJSON(t, c)), nil)
		switch {
		case agreed && resp.StatusCode != http.StatusAccepted:
			t.Fatalf("agreed format: %d %s", resp.StatusCode, body)
		case !agreed && (resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "--subject-format")):
			t.Fatalf("format not agreed: %d %s", resp.StatusCode, body)
		}
	}
}

// TestCheckWithoutHTTP: Check judges a SET like the endpoint, records it
// for duplicate detection, and applies the size limit itself.
func TestCheckWithoutHTTP(t *testing.T) {
	h := newHarness(t, nil)
	set := h.jwxSET(mustJSON(t, claims(h.clock.Now(), "offline")))
	ctx := t.Context()
	if v := h.r.Check(ctx, set); !v.Accepted() || v.JTI != "offline" || v.Duplicate || len(v.Warnings) != 0 {
		t.Fatalf("first: %+v", v)
	}
	if v := h.r.Check(ctx, set); !v.Accepted() || !v.Duplicate {
		t.Fatalf("retransmission: %+v", v)
	}
	c := claims(h.clock.Now(), "offline")
	c["txn"] = "changed"
	if v := h.r.Check(ctx, h.jwxSET(mustJSON(t, c))); v.Accepted() || v.Err != ErrInvalidRequest || v.Violations[0].Kind != VJTIReuseMismatch {
		t.Fatalf("same jti, other claims: %+v", v)
	}
	if v := h.r.Check(ctx, strings.Repeat("a", 70<<10)); v.Status != http.StatusBadRequest || v.Violations[0].Kind != VBodyTooLarge {
		t.Fatalf("oversized: %+v", v)
	}
}
