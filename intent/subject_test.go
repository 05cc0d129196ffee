package intent

import "testing"

// TestSubjectFormats has a good and a bad case (at least) for every RFC 9493
// / SSF subject identifier format, the complex subject and the legacy form.
func TestSubjectFormats(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		field   string // "" when the subject is valid
		want    string
	}{
		{"account", `{"format":"account","uri":"acct:alice@example.com"}`, "", ""},
		{"account not acct", `{"format":"account","uri":"mailto:alice@example.com"}`, "subject.uri", "acct: URI"},
		{"account no host", `{"format":"account","uri":"acct:alice"}`, "subject.uri", "acct: URI"},
		{"account missing uri", `{"format":"account"}`, "subject.uri", "required"},
		{"email", `{"format":"email","email":"alice@example.com"}`, "", ""},
		{"email unicode", `{"format":"email","email":"zoë@exämple.com"}`, "", ""},
		{"email no at", `{"format":"email","email":"alice"}`, "subject.email", "not an email address"},
		{"email two ats", `{"format":"email","email":"a@b@c"}`, "subject.email", "not an email address"},
		{"email space", `{"format":"email","email":"a @b.c"}`, "subject.email", "not an email address"},
		{"email number", `{"format":"email","email":5}`, "subject.email", "must be a string"},
		{"phone_number", `{"format":"phone_number","phone_number":"+12065550100"}`, "", ""},
		{"phone_number national", `{"format":"phone_number","phone_number":"02065550100"}`, "subject.phone_number", "E.164"},
		{"phone_number too long", `{"format":"phone_number","phone_number":"+1234567890123456"}`, "subject.phone_number", "E.164"},
		{"phone_number spaces", `{"format":"phone_number","phone_number":"+44 7700 900123"}`, "subject.phone_number", "E.164"},
		{"iss_sub", `{"format":"iss_sub","iss":"https://idp.example.com/","sub":"145234573"}`, "", ""},
		{"iss_sub missing iss", `{"format":"iss_sub","sub":"145234573"}`, "subject.iss", "required"},
		{"iss_sub empty sub", `{"format":"iss_sub","iss":"https://idp.example.com/","sub":""}`, "subject.sub", "must not be empty"},
		{"opaque", `{"format":"opaque","id":"11112222333344445555"}`, "", ""},
		{"opaque number", `{"format":"opaque","id":1}`, "subject.id", "must be a string"},
		{"aliases", `{"format":"aliases","identifiers":[{"format":"email","email":"a@b.c"},{"format":"opaque","id":"x"}]}`, "", ""},
		{"aliases empty", `{"format":"aliases","identifiers":[]}`, "subject.identifiers", "non-empty array"},
		{"aliases missing", `{"format":"aliases"}`, "subject.identifiers", "required"},
		{"aliases nested", `{"format":"aliases","identifiers":[{"format":"aliases","identifiers":[]}]}`, "subject.identifiers[0].format", "must not nest"},
		{"aliases bad member", `{"format":"aliases","identifiers":[{"format":"email","email":"x"}]}`, "subject.identifiers[0].email", "not an email"},
		{"aliases element string", `{"format":"aliases","identifiers":["a@b.c"]}`, "subject.identifiers[0]", "must be a subject identifier object"},
		{"did", `{"format":"did","url":"did:example:123456"}`, "", ""},
		{"did with path", `{"format":"did","url":"did:web:example.com:user:alice/profile?x=1"}`, "", ""},
		{"did not did", `{"format":"did","url":"https://example.com/did"}`, "subject.url", "not a DID URL"},
		{"did upper method", `{"format":"did","url":"did:Example:1"}`, "subject.url", "not a DID URL"},
		{"uri", `{"format":"uri","uri":"https://example.com/users/123"}`, "", ""},
		{"uri urn", `{"format":"uri","uri":"urn:fdc:gov.uk:2022:abc"}`, "", ""},
		{"uri relative", `{"format":"uri","uri":"/users/123"}`, "subject.uri", "not an absolute URI"},
		{"jwt_id", `{"format":"jwt_id","iss":"https://idp.example.com/","jti":"B70BA622-9515-4353-A866-823539EECBC8"}`, "", ""},
		{"jwt_id missing jti", `{"format":"jwt_id","iss":"https://idp.example.com/"}`, "subject.jti", "required"},
		{"saml_assertion_id", `{"format":"saml_assertion_id","issuer":"https://idp.example.com/","assertion_id":"_8e8dc5f69a98cc4c1ff3427e5ce34606fd672f91e6"}`, "", ""},
		{"saml_assertion_id missing", `{"format":"saml_assertion_id","assertion_id":"_8e8d"}`, "subject.issuer", "required"},
		{"ip-addresses", `{"format":"ip-addresses","ip-addresses":["10.29.37.75","2001:db8::1","::ffff:192.0.2.1"]}`, "", ""},
		{"ip-addresses empty", `{"format":"ip-addresses","ip-addresses":[]}`, "subject.ip-addresses", "non-empty array"},
		{"ip-addresses string", `{"format":"ip-addresses","ip-addresses":"10.0.0.1"}`, "subject.ip-addresses", "non-empty array"},
		{"ip-addresses bad", `{"format":"ip-addresses","ip-addresses":["10.0.0.1","10.0.0.256"]}`, "subject.ip-addresses[1]", "not an IPv4 or IPv6"},
		{"ip-addresses leading zero", `{"format":"ip-addresses","ip-addresses":["010.0.0.1"]}`, "subject.ip-addresses[0]", "not an IPv4 or IPv6"},
		{"ip-addresses zone", `{"format":"ip-addresses","ip-addresses":["fe80::1%eth0"]}`, "subject.ip-addresses[0]", "no zone"},
		{"unknown format", `{"format":"username","username":"bob"}`, "subject.format", `unknown format "username"`},
		{"format number", `{"format":1}`, "subject.format", "must be a string"},
		{"extra member", `{"format":"opaque","id":"x","name":"y"}`, "subject.name", `unknown member for format "opaque"; allowed: format, id`},
		{"complex", `{"format":"complex","user":{"format":"email","email":"a@b.c"},"device":{"format":"opaque","id":"d"},"session":{"format":"opaque","id":"s"},"application":{"format":"opaque","id":"a"},"tenant":{"format":"opaque","id":"t"},"org_unit":{"format":"opaque","id":"o"},"group":{"format":"opaque","id":"g"}}`, "", ""},
		{"complex additional member name", `{"format":"complex","user":{"format":"opaque","id":"u"},"printer":{"format":"opaque","id":"p"}}`, "", ""},
		{"complex aliases member", `{"format":"complex","user":{"format":"aliases","identifiers":[{"format":"email","email":"a@b.c"}]}}`, "", ""},
		{"complex ip member", `{"format":"complex","device":{"format":"ip-addresses","ip-addresses":["192.0.2.1"]}}`, "", ""},
		{"complex draft form without format", `{"user":{"format":"opaque","id":"u"},"tenant":{"format":"opaque","id":"t"}}`, "subject.format", `needs "format": "complex"`},
		{"complex repeated member name", `{"format":"complex","user":{"format":"opaque","id":"u"},"user":{"format":"opaque","id":"v"}}`, "subject.user", "duplicate member"},
		{"complex empty member name", `{"format":"complex","":{"format":"opaque","id":"u"}}`, `subject[""]`, "needs a name"},
		{"complex no members", `{"format":"complex"}`, "subject", "at least one member"},
		{"complex nested complex", `{"format":"complex","user":{"format":"complex","device":{"format":"opaque","id":"d"}}}`, "subject.user.format", "cannot nest"},
		{"complex member not identifier", `{"format":"complex","user":"alice@example.com"}`, "subject.user", "must be a subject identifier object"},
		{"complex member bad", `{"format":"complex","user":{"format":"email"}}`, "subject.user.email", "required"},
		{"complex member without format", `{"format":"complex","user":{"email":"a@b.c"}}`, "subject.user.format", "required"},
		{"complex member unknown format", `{"format":"complex","user":{"format":"username","username":"bob"}}`, "subject.user.format", `unknown format "username"`},
		{"complex format number", `{"format":7,"user":{"format":"opaque","id":"u"}}`, "subject.format", "must be a string"},
		{"simple with complex member", `{"format":"opaque","id":"x","user":{"format":"opaque","id":"u"}}`, "subject.user", "unknown member"},
		{"format named after a member", `{"format":"user","id":"x"}`, "subject.format", `use "format": "complex"`},
		{"legacy iss-sub", `{"subject_type":"iss-sub","iss":"https://idp.example.com/","sub":"7375626A656374"}`, "", ""},
		{"legacy iss-sub missing iss", `{"subject_type":"iss-sub","sub":"7375626A656374"}`, "subject.iss", "required"},
		{"legacy email", `{"subject_type":"email","email":"a@b.c"}`, "subject.subject_type", "iss-sub"},
		{"no format", `{"email":"a@b.c"}`, "subject.format", "required"},
		{"phone_number with spaces as in SSF 1.0 section 5", `{"format":"phone_number","phone_number":"+1 206 555 0123"}`, "subject.phone_number", "no spaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := withSubjectRaw(tc.subject)
			in, err := Decode([]byte(doc), Options{})
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid subject rejected: %v", err)
				}
				if len(in.Subject) == 0 {
					t.Fatal("subject lost")
				}
				return
			}
			probs := mustProblems(t, doc, Options{})
			if !hasProblem(probs, tc.field, tc.want) {
				t.Errorf("want a problem at %q containing %q, got %q", tc.field, tc.want, probs)
			}
		})
	}
	// Every format in the catalogue has at least one valid case above.
	for f := range subjectFormats {
		found := false
		for _, tc := range tests {
			found = found || (tc.field == "" && tc.name == f)
		}
		if !found {
			t.Errorf("format %s has no valid test case", f)
		}
	}
}
