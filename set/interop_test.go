package set_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// TestIndependentVerification signs SETs with setrelay (go-jose) and checks
// them with a different JOSE implementation, lestrrat-go/jwx v3: the
// signature, the header, and every claim rule of RFC 8417 / SSF 1.0 that
// section 1 of the reference digest lists.
func TestIndependentVerification(t *testing.T) {
	jwxAlg := map[jose.SignatureAlgorithm]jwa.SignatureAlgorithm{
		jose.RS256: jwa.RS256(), jose.PS256: jwa.PS256(), jose.ES256: jwa.ES256(), jose.ES384: jwa.ES384(), jose.EdDSA: jwa.EdDSA(),
	}
	iat := time.Unix(1795752000, 0)
	toe := time.Unix(1795751970, 0)
	subject := map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"}
	in := &intent.Intent{
		ID: "interop-1", Type: "risc.account-disabled",
		EventType:  "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
		Subject:    subject,
		Event:      map[string]any{"reason": "hijacking"},
		OccurredAt: &toe, Txn: "txn-42",
		ExtraEvents: map[string]map[string]any{"https://vocab.account.gov.uk/secevent/v1/eventMetadata": {}},
	}

	for _, alg := range signer.Algorithms() {
		k, err := signer.GenerateKey(alg, "key-"+string(alg))
		if err != nil {
			t.Fatal(err)
		}
		other, err := signer.GenerateKey(alg, "other")
		if err != nil {
			t.Fatal(err)
		}
		s, err := signer.New(k)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name      string
			placement set.Placement
			withKID   bool
			audArray  bool
		}{
			{"sub_id/kid/aud-string", set.PlacementSubID, true, false},
			{"in_event/no-kid/aud-string", set.PlacementInEvent, false, false},
			{"both/kid/aud-array", set.PlacementBoth, true, true},
		} {
			t.Run(string(alg)+"/"+tc.name, func(t *testing.T) {
				p := set.Profile{Receiver: "rcv", Issuer: "https://setrelay.example.com/", Audience: []string{"https://rcv.example.net/"},
					AudienceAsArray: tc.audArray, Placement: tc.placement}
				claims, err := set.Build(in, p, set.Options{IssuedAt: iat})
				if err != nil {
					t.Fatal(err)
				}
				compact, err := s.Sign(claims, tc.withKID)
				if err != nil {
					t.Fatal(err)
				}

				// Signature, with jwx.
				payload, err := jws.Verify([]byte(compact), jws.WithKey(jwxAlg[alg], k.Public()))
				if err != nil {
					t.Fatalf("jwx does not verify the SET: %v", err)
				}
				if !bytes.Equal(payload, claims) {
					t.Fatal("jwx verified a payload other than the built claims")
				}
				if _, err := jws.Verify([]byte(compact), jws.WithKey(jwxAlg[alg], other.Public())); err == nil {
					t.Fatal("jwx verified the SET with another key")
				}
				parts := strings.Split(compact, ".")
				tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.Replace(claims, []byte("hijacking"), []byte("bulk-account"), 1)) + "." + parts[2]
				if _, err := jws.Verify([]byte(tampered), jws.WithKey(jwxAlg[alg], k.Public())); err == nil {
					t.Fatal("jwx verified a tampered SET")
				}

				// Header, with jwx.
				msg, err := jws.Parse([]byte(compact))
				if err != nil {
					t.Fatal(err)
				}
				h := msg.Signatures()[0].ProtectedHeaders()
				if typ, _ := h.Type(); typ != "secevent+jwt" {
					t.Errorf("typ = %q, want secevent+jwt", typ)
				}
				if a, _ := h.Algorithm(); a != jwxAlg[alg] {
					t.Errorf("alg = %v, want %v", a, alg)
				}
				kid, hasKID := h.KeyID()
				if tc.withKID && kid != k.ID {
					t.Errorf("kid = %q (present %v), want %q", kid, hasKID, k.ID)
				}
				if !tc.withKID && hasKID {
					t.Errorf("kid %q present, the receiver asked for none", kid)
				}

				// Registered claims, with jwx's JWT parser and validator.
				tok, err := jwt.Parse([]byte(compact), jwt.WithKey(jwxAlg[alg], k.Public()), jwt.WithValidate(true),
					jwt.WithIssuer(p.Issuer), jwt.WithAudience(p.Audience[0]),
					jwt.WithClock(jwt.ClockFunc(func() time.Time { return iat.Add(time.Second) })))
				if err != nil {
					t.Fatalf("jwx rejects the claims: %v", err)
				}
				if got, ok := tok.IssuedAt(); !ok || !got.Equal(iat) {
					t.Errorf("iat = %v, want %v (seconds)", got, iat)
				}
				if got, _ := tok.JwtID(); got != set.JTI("interop-1", "rcv", "") {
					t.Errorf("jti = %q", got)
				}
				if got, _ := tok.Audience(); !reflect.DeepEqual(got, p.Audience) {
					t.Errorf("aud = %v", got)
				}
				if sub, ok := tok.Subject(); ok {
					t.Errorf("sub = %q present; SSF forbids it", sub)
				}
				if exp, ok := tok.Expiration(); ok {
					t.Errorf("exp = %v present; SSF forbids it", exp)
				}

				// The raw JSON types, which a JWT library smooths over.
				checkRawClaims(t, payload, tc.placement, tc.audArray, subject)
			})
		}
	}
}

func checkRawClaims(t *testing.T, payload []byte, placement set.Placement, audArray bool, subject map[string]any) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"sub", "exp"} {
		if _, ok := raw[k]; ok {
			t.Errorf("%q present", k)
		}
	}
	if string(raw["iat"]) != "1795752000" {
		t.Errorf("iat = %s, want integer seconds 1795752000", raw["iat"])
	}
	if string(raw["toe"]) != "1795751970" {
		t.Errorf("toe = %s, want integer seconds 1795751970", raw["toe"])
	}
	if string(raw["txn"]) != `"txn-42"` {
		t.Errorf("txn = %s", raw["txn"])
	}
	if string(raw["iss"]) != `"https://setrelay.example.com/"` {
		t.Errorf("iss = %s", raw["iss"])
	}
	if isArray := bytes.HasPrefix(raw["aud"], []byte("[")); isArray != audArray {
		t.Errorf("aud = %s, want array: %v", raw["aud"], audArray)
	}
	var jti string
	if err := json.Unmarshal(raw["jti"], &jti); err != nil || len(jti) != 32 {
		t.Errorf("jti = %s", raw["jti"])
	}
	var events map[string]map[string]any
	if err := json.Unmarshal(raw["events"], &events); err != nil {
		t.Fatalf("events is not an object of objects: %v", err)
	}
	main := events["https://schemas.openid.net/secevent/risc/event-type/account-disabled"]
	if main == nil || main["reason"] != "hijacking" || len(events) != 2 {
		t.Errorf("events = %v", events)
	}
	var subID map[string]any
	if r, ok := raw["sub_id"]; ok {
		if err := json.Unmarshal(r, &subID); err != nil {
			t.Fatal(err)
		}
	}
	wantTop := placement != set.PlacementInEvent
	wantIn := placement != set.PlacementSubID
	if got := reflect.DeepEqual(subID, subject); got != wantTop {
		t.Errorf("top-level sub_id = %v, want present: %v", subID, wantTop)
	}
	if got := reflect.DeepEqual(main["subject"], subject); got != wantIn {
		t.Errorf("event subject = %v, want present: %v", main["subject"], wantIn)
	}
}
