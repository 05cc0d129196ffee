package set

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
)

const (
	accountDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	sessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	verification    = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	govukMetadata   = "https://vocab.account.gov.uk/secevent/v1/eventMetadata"
)

var issuedAt = time.Date(2026, 11, 27, 4, 0, 0, 999_000_000, time.UTC) // sub-second part must be dropped

func sampleIntent() *intent.Intent {
	toe := time.Date(2026, 11, 27, 3, 59, 30, 500_000_000, time.UTC)
	return &intent.Intent{
		ID:         "01JDX7Q2-user-42-revoked",
		Type:       "caep.session-revoked",
		EventType:  sessionRevoked,
		Subject:    map[string]any{"format": "email", "email": "user@example.com"},
		Event:      map[string]any{"initiating_entity": "policy", "reason_admin": map[string]any{"en": "Landspeed violation"}, "event_timestamp": float64(1795751970)},
		OccurredAt: &toe,
		Txn:        "8675309",
	}
}

func sampleProfile() Profile {
	return Profile{Receiver: "govuk", Issuer: "https://setrelay.example.com/", Audience: []string{"https://rcv.example.net/"}, Placement: PlacementSubID}
}

// decode parses claims keeping numbers as json.Number so an integer iat can
// be told from a fractional one.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("claims are not JSON: %v\n%s", err, b)
	}
	return m
}

func TestBuildClaims(t *testing.T) {
	subject := map[string]any{"format": "email", "email": "user@example.com"}
	tests := []struct {
		name   string
		in     func(*intent.Intent)
		p      func(*Profile)
		o      func(*Options)
		checks func(t *testing.T, c map[string]any)
	}{
		{
			name: "required claims",
			checks: func(t *testing.T, c map[string]any) {
				want := map[string]any{
					"iss": "https://setrelay.example.com/",
					"iat": json.Number("1795752000"),
					"jti": JTI("01JDX7Q2-user-42-revoked", "govuk", ""),
					"aud": "https://rcv.example.net/",
					"txn": "8675309",
					"toe": json.Number("1795751970"),
				}
				for k, v := range want {
					if !reflect.DeepEqual(c[k], v) {
						t.Errorf("%s = %#v, want %#v", k, c[k], v)
					}
				}
			},
		},
		{
			name: "iat is whole seconds, not milliseconds",
			o:    func(o *Options) { o.IssuedAt = time.UnixMilli(1508184845999) },
			checks: func(t *testing.T, c map[string]any) {
				if c["iat"] != json.Number("1508184845") {
					t.Errorf("iat = %v, want 1508184845", c["iat"])
				}
			},
		},
		{
			name: "single audience is a string",
			checks: func(t *testing.T, c map[string]any) {
				if _, ok := c["aud"].(string); !ok {
					t.Errorf("aud = %#v, want a string", c["aud"])
				}
			},
		},
		{
			name: "single audience as array when asked",
			p:    func(p *Profile) { p.AudienceAsArray = true },
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["aud"], []any{"https://rcv.example.net/"}) {
					t.Errorf("aud = %#v, want a one-element array", c["aud"])
				}
			},
		},
		{
			name: "several audiences are an array",
			p:    func(p *Profile) { p.Audience = []string{"a", "b"} },
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["aud"], []any{"a", "b"}) {
					t.Errorf("aud = %#v", c["aud"])
				}
			},
		},
		{
			// SSF 1.0 §4.1.9: transmitters SHOULD set txn; the intent id
			// names the underlying event when the producer gave no txn.
			name: "no toe, and the intent id as txn, when the intent has neither",
			in:   func(in *intent.Intent) { in.Txn = ""; in.OccurredAt = nil },
			checks: func(t *testing.T, c map[string]any) {
				if _, ok := c["toe"]; ok {
					t.Error("toe present")
				}
				if c["txn"] != "01JDX7Q2-user-42-revoked" {
					t.Errorf("txn = %#v, want the intent id", c["txn"])
				}
			},
		},
		{
			name: "placement sub_id",
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["sub_id"], subject) {
					t.Errorf("sub_id = %#v", c["sub_id"])
				}
				if _, ok := event(t, c, sessionRevoked)["subject"]; ok {
					t.Error("subject also inside the event")
				}
			},
		},
		{
			name: "empty placement means sub_id",
			p:    func(p *Profile) { p.Placement = "" },
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["sub_id"], subject) {
					t.Errorf("sub_id = %#v", c["sub_id"])
				}
			},
		},
		{
			name: "placement in_event",
			p:    func(p *Profile) { p.Placement = PlacementInEvent },
			checks: func(t *testing.T, c map[string]any) {
				if _, ok := c["sub_id"]; ok {
					t.Error("sub_id present")
				}
				ev := event(t, c, sessionRevoked)
				if !reflect.DeepEqual(ev["subject"], subject) || ev["initiating_entity"] != "policy" {
					t.Errorf("event = %#v", ev)
				}
			},
		},
		{
			name: "placement both",
			p:    func(p *Profile) { p.Placement = PlacementBoth },
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["sub_id"], subject) || !reflect.DeepEqual(event(t, c, sessionRevoked)["subject"], subject) {
					t.Errorf("claims = %#v", c)
				}
			},
		},
		{
			name: "SSF verification without subject has no sub_id",
			in: func(in *intent.Intent) {
				in.EventType, in.Subject, in.Event = verification, nil, map[string]any{"state": "VGhpcyBpcyBhbiBleGFtcGxl"}
			},
			p: func(p *Profile) { p.Placement = PlacementBoth },
			checks: func(t *testing.T, c map[string]any) {
				if _, ok := c["sub_id"]; ok {
					t.Error("sub_id present")
				}
				if ev := event(t, c, verification); !reflect.DeepEqual(ev, map[string]any{"state": "VGhpcyBpcyBhbiBleGFtcGxl"}) {
					t.Errorf("event = %#v", ev)
				}
			},
		},
		{
			name: "SSF verification with the stream as opaque sub_id",
			in: func(in *intent.Intent) {
				in.EventType, in.Subject, in.Event = verification, map[string]any{"format": "opaque", "id": "stream-1"}, nil
			},
			checks: func(t *testing.T, c map[string]any) {
				if !reflect.DeepEqual(c["sub_id"], map[string]any{"format": "opaque", "id": "stream-1"}) {
					t.Errorf("sub_id = %#v", c["sub_id"])
				}
				if ev := event(t, c, verification); len(ev) != 0 {
					t.Errorf("event = %#v, want {}", ev)
				}
			},
		},
		{
			name: "extra events sit beside the main event",
			in: func(in *intent.Intent) {
				in.ExtraEvents = map[string]map[string]any{govukMetadata: {"clientId": "abc"}, "https://example.com/empty": nil}
			},
			p: func(p *Profile) { p.Placement = PlacementInEvent },
			checks: func(t *testing.T, c map[string]any) {
				evs := c["events"].(map[string]any)
				if len(evs) != 3 {
					t.Errorf("events has %d members, want 3", len(evs))
				}
				if !reflect.DeepEqual(evs[govukMetadata], map[string]any{"clientId": "abc"}) {
					t.Errorf("metadata = %#v", evs[govukMetadata])
				}
				if !reflect.DeepEqual(evs["https://example.com/empty"], map[string]any{}) {
					t.Errorf("nil extra event = %#v, want {}", evs["https://example.com/empty"])
				}
				if _, ok := evs[govukMetadata].(map[string]any)["subject"]; ok {
					t.Error("subject put into an extra event")
				}
			},
		},
		{
			name: "complex subject with nested identifiers",
			in: func(in *intent.Intent) {
				in.Subject = map[string]any{"format": "complex",
					"user":    map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
					"session": map[string]any{"format": "opaque", "id": "s-1"}}
			},
			checks: func(t *testing.T, c map[string]any) {
				sub := c["sub_id"].(map[string]any)
				if sub["format"] != "complex" || sub["user"].(map[string]any)["sub"] != "7375626A656374" {
					t.Errorf("sub_id = %#v", sub)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in, p, o := sampleIntent(), sampleProfile(), Options{IssuedAt: issuedAt}
			if tc.in != nil {
				tc.in(in)
			}
			if tc.p != nil {
				tc.p(&p)
			}
			if tc.o != nil {
				tc.o(&o)
			}
			b, err := Build(in, p, o)
			if err != nil {
				t.Fatal(err)
			}
			c := decode(t, b)
			checkSSFRules(t, c)
			tc.checks(t, c)
		})
	}
}

// checkSSFRules asserts what must hold for every SET: the required claims
// with the right JSON types, events values are objects, no sub, no exp.
func checkSSFRules(t *testing.T, c map[string]any) {
	t.Helper()
	for _, k := range []string{"sub", "exp"} {
		if _, ok := c[k]; ok {
			t.Errorf("claims carry %q, which SSF forbids", k)
		}
	}
	if s, ok := c["iss"].(string); !ok || s == "" {
		t.Errorf("iss = %#v", c["iss"])
	}
	if n, ok := c["iat"].(json.Number); !ok || strings.ContainsAny(string(n), ".eE") {
		t.Errorf("iat = %#v, want an integer", c["iat"])
	}
	if s, ok := c["jti"].(string); !ok || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(s) {
		t.Errorf("jti = %#v", c["jti"])
	}
	evs, ok := c["events"].(map[string]any)
	if !ok || len(evs) == 0 {
		t.Fatalf("events = %#v", c["events"])
	}
	for k, v := range evs {
		if _, ok := v.(map[string]any); !ok {
			t.Errorf("events[%s] = %#v, want an object", k, v)
		}
	}
}

func event(t *testing.T, c map[string]any, typ string) map[string]any {
	t.Helper()
	ev, ok := c["events"].(map[string]any)[typ].(map[string]any)
	if !ok {
		t.Fatalf("no event %s in %#v", typ, c["events"])
	}
	return ev
}

func TestBuildDeterministic(t *testing.T) {
	p := sampleProfile()
	p.Placement = PlacementBoth
	o := Options{IssuedAt: issuedAt}
	first, err := Build(sampleIntent(), p, o)
	if err != nil {
		t.Fatal(err)
	}
	// Many rebuilds, from fresh maps: Go randomises map iteration, so any
	// order leak would show.
	for range 50 {
		again, err := Build(sampleIntent(), p, o)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("rebuild differs:\n%s\n%s", first, again)
		}
	}

	jti := func(b []byte) string { return decode(t, b)["jti"].(string) }
	other := p
	other.Receiver = "other"
	b2, err := Build(sampleIntent(), other, o)
	if err != nil {
		t.Fatal(err)
	}
	b3, err := Build(sampleIntent(), p, Options{IssuedAt: issuedAt, ReplayOf: "dlq-17"})
	if err != nil {
		t.Fatal(err)
	}
	if jti(first) == jti(b2) {
		t.Error("another receiver got the same jti")
	}
	if jti(first) == jti(b3) || jti(b2) == jti(b3) {
		t.Error("a replay kept the jti")
	}
	later, err := Build(sampleIntent(), p, Options{IssuedAt: issuedAt.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if jti(later) != jti(first) {
		t.Error("the jti depends on the issue time; a redelivery must keep it")
	}
}

func TestJTI(t *testing.T) {
	a := JTI("id", "rcv", "")
	if a != JTI("id", "rcv", "") {
		t.Error("JTI is not deterministic")
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(a) {
		t.Errorf("JTI = %q, want 32 hex characters", a)
	}
	distinct := [][3]string{
		{"id", "rcv", ""},
		{"id", "rcv", "1"},
		{"id", "rcv", "2"},
		{"id", "rcv2", ""},
		{"id2", "rcv", ""},
		{"idr", "cv", ""}, // same concatenation as ("id","rcv")
		{"id", "", "rcv"},
		{"", "idrcv", ""},
	}
	seen := map[string][3]string{}
	for _, d := range distinct {
		j := JTI(d[0], d[1], d[2])
		if prev, ok := seen[j]; ok {
			t.Errorf("JTI%v == JTI%v", d, prev)
		}
		seen[j] = d
	}
	// A long id must not break the stack-buffer fast path.
	if long := JTI(strings.Repeat("x", 1000), "r", ""); long == JTI(strings.Repeat("x", 999), "r", "") {
		t.Error("long ids collide")
	}
}

func TestBuildDoesNotMutate(t *testing.T) {
	in := sampleIntent()
	in.ExtraEvents = map[string]map[string]any{govukMetadata: {"k": "v"}}
	before := *in
	before.Event = maps.Clone(in.Event)
	before.Subject = maps.Clone(in.Subject)
	p := sampleProfile()
	p.Placement = PlacementBoth
	if _, err := Build(in, p, Options{IssuedAt: issuedAt}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in.Event, before.Event) || !reflect.DeepEqual(in.Subject, before.Subject) || len(in.ExtraEvents) != 1 {
		t.Errorf("Build changed the intent: %#v", in)
	}
	if _, ok := in.Event["subject"]; ok {
		t.Error("Build added subject to the intent's event map")
	}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name string
		in   func(*intent.Intent) *intent.Intent
		p    func(*Profile)
		o    Options
		want string
	}{
		{"nil intent", func(*intent.Intent) *intent.Intent { return nil }, nil, Options{IssuedAt: issuedAt}, "no intent"},
		{"no id", func(in *intent.Intent) *intent.Intent { in.ID = ""; return in }, nil, Options{IssuedAt: issuedAt}, "no id"},
		{"unresolved type", func(in *intent.Intent) *intent.Intent { in.EventType = ""; return in }, nil, Options{IssuedAt: issuedAt}, "event type"},
		{"no issuer", nil, func(p *Profile) { p.Issuer = "" }, Options{IssuedAt: issuedAt}, "issuer"},
		{"no audience", nil, func(p *Profile) { p.Audience = nil }, Options{IssuedAt: issuedAt}, "audience"},
		{"bad placement", nil, func(p *Profile) { p.Placement = "top" }, Options{IssuedAt: issuedAt}, `placement "top"`},
		{"no issue time", nil, nil, Options{}, "issue time"},
		{"extra event repeats the main type", func(in *intent.Intent) *intent.Intent {
			in.ExtraEvents = map[string]map[string]any{in.EventType: {}}
			return in
		}, nil, Options{IssuedAt: issuedAt}, "repeats"},
		{"event already has subject", func(in *intent.Intent) *intent.Intent { in.Event["subject"] = "x"; return in },
			func(p *Profile) { p.Placement = PlacementInEvent }, Options{IssuedAt: issuedAt}, `"subject" member`},
		{"value JSON cannot hold", func(in *intent.Intent) *intent.Intent { in.Event["bad"] = func() {}; return in }, nil, Options{IssuedAt: issuedAt}, "bad"},
		{"NaN", func(in *intent.Intent) *intent.Intent { in.Subject["n"] = nan(); return in }, nil, Options{IssuedAt: issuedAt}, "subject.n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := sampleIntent()
			if tc.in != nil {
				in = tc.in(in)
			}
			p := sampleProfile()
			if tc.p != nil {
				tc.p(&p)
			}
			b, err := Build(in, p, tc.o)
			if err == nil {
				t.Fatalf("Build accepted it: %s", b)
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func TestPlacementValid(t *testing.T) {
	for p, want := range map[Placement]bool{PlacementSubID: true, PlacementInEvent: true, PlacementBoth: true, "": false, "sub": false} {
		if p.Valid() != want {
			t.Errorf("%q.Valid() = %v", p, !want)
		}
	}
}
