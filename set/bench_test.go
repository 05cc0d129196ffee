package set_test

import (
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// benchIntent is a realistic CAEP intent: a session revoked for one user,
// with a reason in two languages, a txn, a time of event, and a GOV.UK-style
// metadata entry beside the main event. Its claims are about 500 bytes.
func benchIntent() *intent.Intent {
	toe := time.Unix(1795751970, 0)
	return &intent.Intent{
		ID:        "01JDX7Q2W3E4R5T6Y7U8I9O0P1-session-revoked",
		Type:      "caep.session-revoked",
		EventType: "https://schemas.openid.net/secevent/caep/event-type/session-revoked",
		Subject: map[string]any{"format": "complex",
			"user":    map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "urn:fdc:gov.uk:2022:56P4CMsGh_02YOlWpd8PAOI-2sVlB2nsNU7mcLZYhYw"},
			"session": map[string]any{"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"}},
		Event: map[string]any{
			"initiating_entity": "policy",
			"reason_admin":      map[string]any{"en": "Landspeed policy violation", "es": "Violación de política de velocidad"},
			"event_timestamp":   float64(1795751970),
		},
		OccurredAt:  &toe,
		Txn:         "8675309-2026-11-27",
		ExtraEvents: map[string]map[string]any{"https://vocab.account.gov.uk/secevent/v1/eventMetadata": {"clientId": "rp-42"}},
	}
}

var benchProfile = set.Profile{Receiver: "govuk", Issuer: "https://setrelay.example.com/", Audience: []string{"https://ssf.account.gov.uk/"}, Placement: set.PlacementSubID}

type benchKit struct {
	s       *signer.Signer
	bare    jose.Signer
	in      *intent.Intent
	opts    set.Options
	payload []byte
}

// kit builds, once per algorithm, setrelay's Signer and a bare go-jose
// signer with the same key, typ header and kid: the baseline is what a
// hand-written go-jose transmitter would do with claims it already has.
func kit(b *testing.B, alg jose.SignatureAlgorithm) benchKit {
	b.Helper()
	k, err := signer.GenerateKey(alg, "bench-key")
	if err != nil {
		b.Fatal(err)
	}
	s, err := signer.New(k)
	if err != nil {
		b.Fatal(err)
	}
	pemBytes, err := k.PrivatePEM()
	if err != nil {
		b.Fatal(err)
	}
	priv, err := privFromPEM(pemBytes)
	if err != nil {
		b.Fatal(err)
	}
	bare, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: priv, KeyID: k.ID}},
		(&jose.SignerOptions{}).WithType("secevent+jwt"))
	if err != nil {
		b.Fatal(err)
	}
	in := benchIntent()
	opts := set.Options{IssuedAt: time.Unix(1795752000, 0)}
	payload, err := set.Build(in, benchProfile, opts)
	if err != nil {
		b.Fatal(err)
	}
	return benchKit{s: s, bare: bare, in: in, opts: opts, payload: payload}
}

func (k benchKit) buildSign(b *testing.B) {
	claims, err := set.Build(k.in, benchProfile, k.opts)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := k.s.Sign(claims, true); err != nil {
		b.Fatal(err)
	}
}

func (k benchKit) bareSign(b *testing.B) {
	obj, err := k.bare.Sign(k.payload)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := obj.CompactSerialize(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBuildSign is setrelay's cost per SET: build the claims from the
// intent, then sign them.
func BenchmarkBuildSign(b *testing.B) {
	for _, alg := range signer.Algorithms() {
		b.Run(string(alg), func(b *testing.B) {
			k := kit(b, alg)
			b.SetBytes(int64(len(k.payload)))
			b.ReportAllocs()
			for b.Loop() {
				k.buildSign(b)
			}
		})
	}
}

// BenchmarkBareJose is the baseline: go-jose signing the same claims bytes
// with a signer built once.
func BenchmarkBareJose(b *testing.B) {
	for _, alg := range signer.Algorithms() {
		b.Run(string(alg), func(b *testing.B) {
			k := kit(b, alg)
			b.SetBytes(int64(len(k.payload)))
			b.ReportAllocs()
			for b.Loop() {
				k.bareSign(b)
			}
		})
	}
}

// BenchmarkBuild is set.Build alone.
func BenchmarkBuild(b *testing.B) {
	in := benchIntent()
	opts := set.Options{IssuedAt: time.Unix(1795752000, 0)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := set.Build(in, benchProfile, opts); err != nil {
			b.Fatal(err)
		}
	}
}
