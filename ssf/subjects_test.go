package ssf_test

import (
	"testing"

	"github.com/setrelay/setrelay/intent"
)

func email(e string) map[string]any { return map[string]any{"format": "email", "email": e} }

// complexSubject is an SSF 1.0 complex subject ("format": "complex").
func complexSubject(members map[string]any) map[string]any {
	out := map[string]any{"format": "complex"}
	for k, v := range members {
		out[k] = v
	}
	return out
}

func subjectEvent(id string, subject map[string]any) *intent.Intent {
	return &intent.Intent{ID: id, Type: "caep.session-revoked", Subject: subject, Txn: id}
}

func txns(claims []map[string]any) map[string]bool {
	out := map[string]bool{}
	for _, c := range claims {
		out[c["txn"].(string)] = true
	}
	return out
}

// default_subjects NONE: only events about added, verified subjects are
// delivered; a complex subject matches events whose subject has the same
// members and more (§8.1.3.1).
func TestSubjectsNoneDeliversOnlyAddedSubjects(t *testing.T) {
	x := newTX(t, txOptions{DefaultSubjects: "NONE"})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	tenant := map[string]any{"format": "opaque", "id": "tenant-T"}
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": email("a@example.com")}, nil)
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": email("unverified@example.com"), "verified": false}, nil)
	// The API also takes a complex subject written members-only.
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": map[string]any{"tenant": tenant}}, nil)
	// §9 subject probing: a subject this transmitter has never heard of
	// is accepted like any other, revealing nothing.
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": email("nobody-ever@example.com")}, nil)

	x.publish(
		subjectEvent("a", email("a@example.com")),
		subjectEvent("b", email("b@example.com")),
		subjectEvent("unverified", email("unverified@example.com")),
		subjectEvent("tenant-user", complexSubject(map[string]any{"tenant": tenant, "user": email("u@example.com")})),
		subjectEvent("other-tenant", complexSubject(map[string]any{"tenant": map[string]any{"format": "opaque", "id": "tenant-X"}, "user": email("u@example.com")})),
		subjectEvent("simple-a-as-member", complexSubject(map[string]any{"user": email("a@example.com")})),
	)
	got := txns(x.drain(tokenA, id, 6))
	if len(got) != 2 || !got["a"] || !got["tenant-user"] {
		t.Fatalf("delivered %v, want a and tenant-user", got)
	}

	// Removing a subject stops its events (204), and removing one never
	// added answers the same.
	x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": email("a@example.com")}, nil)
	x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": email("never-added@example.com")}, nil)
	x.publish(subjectEvent("a-again", email("a@example.com")), subjectEvent("tenant-again", complexSubject(map[string]any{"tenant": tenant})))
	got = txns(x.drain(tokenA, id, 2))
	if len(got) != 1 || !got["tenant-again"] {
		t.Fatalf("after removing a: delivered %v, want tenant-again only", got)
	}
}

// default_subjects ALL: everything is delivered except removed subjects.
func TestSubjectsAllDeliversAllButRemoved(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": email("gone@example.com")}, nil)
	x.publish(subjectEvent("gone", email("gone@example.com")), subjectEvent("kept", email("kept@example.com")))
	got := txns(x.drain(tokenA, id, 2))
	if len(got) != 1 || !got["kept"] {
		t.Fatalf("delivered %v, want kept only", got)
	}
	// Adding it back restores its events.
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": email("gone@example.com")}, nil)
	x.publish(subjectEvent("back", email("gone@example.com")))
	if got := txns(x.drain(tokenA, id, 1)); !got["back"] {
		t.Fatalf("after adding back: %v", got)
	}
}

func TestSubjectsTooFast429(t *testing.T) {
	x := newTX(t, txOptions{SubjectRate: 1})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	body := map[string]any{"stream_id": id, "subject": email("a@example.com")}
	x.must(200, "POST", "/ssf/subjects:add", tokenA, body, nil)
	status, b, hdr := x.do("POST", "/ssf/subjects:add", tokenA, body)
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("second add within a second at 1/s: %d %s", status, b)
	}
	if status, b, _ := x.do("POST", "/ssf/subjects:remove", tokenA, body); status != 429 {
		t.Fatalf("remove within a second at 1/s: %d %s", status, b)
	}
}

// §8.1.3.1 in the direction the event has fewer members, through the API:
// a stream that added {tenant: T, user: U} receives events about {tenant:
// T} alone and about {user: U, device: D}, not about another tenant, a
// conflicting user, a device alone, or U as a simple subject. Adding it
// twice and removing it once removes it (subjects are a set).
func TestSubjectsComplexMatchesEventWithFewerMembers(t *testing.T) {
	x := newTX(t, txOptions{DefaultSubjects: "NONE"})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	tenant := map[string]any{"format": "opaque", "id": "tenant-T"}
	user := email("u@example.com")
	stored := complexSubject(map[string]any{"tenant": tenant, "user": user})
	for range 2 {
		x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": stored}, nil)
	}

	x.publish(
		subjectEvent("tenant-only", complexSubject(map[string]any{"tenant": tenant})),
		subjectEvent("user-device", complexSubject(map[string]any{"user": user, "device": map[string]any{"format": "opaque", "id": "D"}})),
		subjectEvent("other-tenant", complexSubject(map[string]any{"tenant": map[string]any{"format": "opaque", "id": "tenant-X"}})),
		subjectEvent("other-user", complexSubject(map[string]any{"tenant": tenant, "user": email("v@example.com")})),
		subjectEvent("device-only", complexSubject(map[string]any{"device": map[string]any{"format": "opaque", "id": "D"}})),
		subjectEvent("simple-user", user),
	)
	got := txns(x.drain(tokenA, id, 6))
	if len(got) != 2 || !got["tenant-only"] || !got["user-device"] {
		t.Fatalf("delivered %v, want tenant-only and user-device", got)
	}

	x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": stored}, nil)
	// A simple subject added afterwards shows the stream still delivers.
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": email("marker@example.com")}, nil)
	x.publish(
		subjectEvent("tenant-after-remove", complexSubject(map[string]any{"tenant": tenant})),
		subjectEvent("marker", email("marker@example.com")),
	)
	got = txns(x.drain(tokenA, id, 2))
	if len(got) != 1 || !got["marker"] {
		t.Fatalf("after removing the complex subject: delivered %v, want marker only", got)
	}
}

// Under ALL, removing {tenant: T, user: U} stops events about {tenant: T}
// alone too (they match it), and leaves other tenants alone; adding it
// back restores them.
func TestSubjectsAllRemovedComplexMatchesEventWithFewerMembers(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	tenant := map[string]any{"format": "opaque", "id": "tenant-T"}
	subject := complexSubject(map[string]any{"tenant": tenant, "user": email("u@example.com")})
	x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": subject}, nil)
	x.publish(
		subjectEvent("tenant-only", complexSubject(map[string]any{"tenant": tenant})),
		subjectEvent("other-tenant", complexSubject(map[string]any{"tenant": map[string]any{"format": "opaque", "id": "tenant-X"}})),
	)
	got := txns(x.drain(tokenA, id, 2))
	if len(got) != 1 || !got["other-tenant"] {
		t.Fatalf("delivered %v, want other-tenant only", got)
	}
	x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": subject}, nil)
	x.publish(subjectEvent("tenant-back", complexSubject(map[string]any{"tenant": tenant})))
	if got := txns(x.drain(tokenA, id, 1)); !got["tenant-back"] {
		t.Fatalf("after adding it back: %v", got)
	}
}

// SSF 1.0 §8.1.3.2/§8.1.3.3 answer 400 to a request that is "otherwise
// invalid", and RFC 9493 §3 says an identifier of a format "MUST contain"
// that format's members: a subject no event could ever carry is refused
// with what is wrong, rather than recorded as a subscription that can never
// match. The rule is the one intents are checked with, so what a receiver
// may add is exactly what setrelay may send. Well-formed subjects of every
// kind are still accepted.
func TestSubjectsMalformedIdentifier400(t *testing.T) {
	x := newTX(t, txOptions{DefaultSubjects: "NONE"})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	for name, subject := range map[string]map[string]any{
		"email without email":        {"format": "email"},
		"email that is not one":      {"format": "email", "email": "not an address"},
		"iss_sub without sub":        {"format": "iss_sub", "iss": "https://idp.example/"},
		"opaque id not a string":     {"format": "opaque", "id": 7},
		"member of another format":   {"format": "opaque", "id": "x", "email": "a@example.com"},
		"unknown format":             {"format": "emial", "emial": "a@example.com"},
		"complex member incomplete":  {"format": "complex", "user": map[string]any{"format": "email"}},
		"complex member not a subj.": {"format": "complex", "tenant": map[string]any{"id": "t1"}},
		"ip-addresses not addresses": {"format": "ip-addresses", "ip-addresses": []any{"not-an-ip"}},
	} {
		for _, path := range []string{"/ssf/subjects:add", "/ssf/subjects:remove"} {
			status, b, _ := x.do("POST", path, tokenA, map[string]any{"stream_id": id, "subject": subject})
			if status != 400 {
				t.Errorf("%s %s: %d %s, want 400", path, name, status, b)
			}
		}
	}
	for _, subject := range map[string]map[string]any{
		"email":        email("a@example.com"),
		"iss_sub":      {"format": "iss_sub", "iss": "https://idp.example/", "sub": "42"},
		"jwt_id":       {"format": "jwt_id", "iss": "https://idp.example/", "jti": "j1"},
		"ip-addresses": {"format": "ip-addresses", "ip-addresses": []any{"10.0.0.1", "2001:db8::1"}},
		"complex":      complexSubject(map[string]any{"tenant": map[string]any{"format": "opaque", "id": "t1"}, "user": email("b@example.com")}),
	} {
		x.must(200, "POST", "/ssf/subjects:add", tokenA, map[string]any{"stream_id": id, "subject": subject}, nil)
		x.must(204, "POST", "/ssf/subjects:remove", tokenA, map[string]any{"stream_id": id, "subject": subject}, nil)
	}
}
