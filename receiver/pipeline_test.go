package receiver_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// TestSetrelayOutputPassesStrictChecks sends what setrelay itself builds,
// signs and pushes (set, signer, push with a client-credentials token) to
// the receiver, for an SSF 1.0 profile and a GOV.UK-like one, so the two
// sides are proven to agree on the protocol, not only each with itself.
func TestSetrelayOutputPassesStrictChecks(t *testing.T) {
	cases := []struct {
		name      string
		alg       jose.SignatureAlgorithm
		placement set.Placement
		mode      receiver.SubjectMode
		withKID   bool
		pem       bool
		scopes    []string
	}{
		{name: "ssf", alg: jose.ES256, placement: set.PlacementSubID, mode: receiver.SubjectSubID, withKID: true},
		{name: "govuk", alg: jose.RS256, placement: set.PlacementInEvent, mode: receiver.SubjectInEvent, pem: true, scopes: []string{"messages/write"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, err := signer.GenerateKey(c.alg, "k-"+c.name)
			if err != nil {
				t.Fatal(err)
			}
			sg, err := signer.New(key)
			if err != nil {
				t.Fatal(err)
			}
			const iss, aud = "https://rp.example/", "https://receiver.example/"
			cfg := receiver.Config{
				ClientID: "rp", ClientSecret: "secret", Scopes: c.scopes, Issuer: iss, Audience: aud,
				SubjectMode: c.mode, Algorithms: []jose.SignatureAlgorithm{c.alg}, Quiet: true,
				// Strict: setrelay's output must not even draw a warning.
				Strict: true,
			}
			if c.pem {
				pub, err := key.PublicPEM()
				if err != nil {
					t.Fatal(err)
				}
				cfg.PEMFile = filepath.Join(t.TempDir(), "rp.pem")
				if err := os.WriteFile(cfg.PEMFile, pub, 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				ks := signer.JWKS(key)
				cfg.Keys = &ks
			}
			rcv, err := receiver.New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(rcv.Handler())
			defer srv.Close()
			client, err := push.New(push.Config{
				Name: c.name, Endpoint: srv.URL + "/events", InsecureHTTP: true,
				Auth: push.AuthConfig{TokenURL: srv.URL + "/token", ClientID: "rp", ClientSecret: "secret", Scopes: c.scopes},
			}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			intents := []string{
				`{"id":"i-1","type":"caep.session-revoked","subject":{"format":"email","email":"alice@example.com"},"txn":"t-1",
				  "event":{"initiating_entity":"policy","reason_admin":{"en":"Landspeed policy violation"},"event_timestamp":1700000000}}`,
				`{"id":"i-2","type":"caep.credential-change","subject":{"format":"iss_sub","iss":"https://idp.example.com/","sub":"u-2"},"txn":"t-2",
				  "event":{"credential_type":"fido2-roaming","change_type":"create","friendly_name":"key"}}`,
				`{"id":"i-3","type":"risc.account-disabled","subject":{"format":"phone_number","phone_number":"+447700900123"},"txn":"t-3",
				  "event":{"reason":"hijacking"},"occurred_at":"2026-11-27T04:00:00Z"}`,
			}
			for n, doc := range intents {
				in, err := intent.Decode([]byte(doc), intent.Options{})
				if err != nil {
					t.Fatal(err)
				}
				claims, err := set.Build(in, set.Profile{Receiver: c.name, Issuer: iss, Audience: []string{aud}, Placement: c.placement},
					set.Options{IssuedAt: time.Now()})
				if err != nil {
					t.Fatal(err)
				}
				jws, err := sg.Sign(claims, c.withKID)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 2 { // the second is a retransmission: a duplicate
					if res := client.Push(ctx, []byte(jws)); res.Error() != nil {
						t.Fatalf("intent %d, push %d: %v (%s: %s)", n, i, res.Error(), res.Err, res.Description)
					}
				}
				if rec, ok := rcv.Lookup(set.JTI(in.ID, c.name, "")); !ok || string(rec.Claims) != string(claims) {
					t.Fatalf("record %+v %v", rec, ok)
				}
			}
			st := rcv.Stats()
			if st.Accepted != int64(len(intents)) || st.Duplicates != int64(len(intents)) || len(st.Violations) != 0 || len(st.Warnings) != 0 || st.TokensIssued != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}
