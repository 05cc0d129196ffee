package ssf_test

import (
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

func TestMetadataIssuerPathAndRoot(t *testing.T) {
	x := newTX(t, txOptions{})
	for _, path := range []string{"/.well-known/ssf-configuration/issuer1", "/.well-known/ssf-configuration"} {
		var md map[string]any
		x.must(200, "GET", path, "", nil, &md)
		// A receiver checks the issuer against the URL it discovered from.
		if md["issuer"] != issuer || md["spec_version"] != "1_0" || md["jwks_uri"] != "https://tx.example/jwks.json" {
			t.Fatalf("%s: %v", path, md)
		}
		methods, _ := md["delivery_methods_supported"].([]any)
		if len(methods) != 2 || methods[0] != ssf.MethodPush || methods[1] != ssf.MethodPoll {
			t.Fatalf("delivery_methods_supported %v", methods)
		}
		for member, p := range map[string]string{
			"configuration_endpoint": "/ssf/streams", "status_endpoint": "/ssf/status", "add_subject_endpoint": "/ssf/subjects:add",
			"remove_subject_endpoint": "/ssf/subjects:remove", "verification_endpoint": "/ssf/verify",
		} {
			if md[member] != x.base+p || !strings.HasPrefix(md[member].(string), "https://") {
				t.Errorf("%s = %v, want %s", member, md[member], x.base+p)
			}
		}
		schemes, _ := md["authorization_schemes"].([]any)
		if len(schemes) != 1 || schemes[0].(map[string]any)["spec_urn"] != "urn:ietf:rfc:6749" {
			t.Errorf("authorization_schemes %v", schemes)
		}
		if md["default_subjects"] != "ALL" {
			t.Errorf("default_subjects %v", md["default_subjects"])
		}
		// Nothing is critical unless the operator says so.
		if v, ok := md["critical_subject_members"]; ok {
			t.Errorf("critical_subject_members %v, want it left out", v)
		}
	}
	// The metadata is public, but only readable.
	if status, _, _ := x.do("POST", "/.well-known/ssf-configuration", "", "{}"); status != http.StatusMethodNotAllowed {
		t.Fatalf("POST metadata: %d", status)
	}
}

// Every authenticated endpoint answers 401 with an RFC 6750 challenge to
// no token, an unknown token and a non-bearer scheme, and 403 to a token
// without the scope the endpoint needs.
func TestAuthentication401And403(t *testing.T) {
	x := newTX(t, txOptions{})
	st := x.createPoll(tokenA, caepType)
	id := st["stream_id"].(string)
	endpoints := []struct {
		method, path string
		body         any
		scope        string // what tokenRO lacks, "" if it has it
	}{
		{"POST", "/ssf/streams", map[string]any{}, ssf.ScopeManage},
		{"GET", "/ssf/streams?stream_id=" + id, nil, ""},
		{"GET", "/ssf/streams", nil, ""},
		{"PATCH", "/ssf/streams", map[string]any{"stream_id": id}, ssf.ScopeManage},
		{"PUT", "/ssf/streams", map[string]any{"stream_id": id}, ssf.ScopeManage},
		{"DELETE", "/ssf/streams?stream_id=" + id, nil, ssf.ScopeManage},
		{"GET", "/ssf/status?stream_id=" + id, nil, ""},
		{"POST", "/ssf/status", map[string]any{"stream_id": id, "status": "paused"}, ssf.ScopeManage},
		{"POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"format": "email", "email": "a@example.com"}}, ssf.ScopeManage},
		{"POST", "/ssf/subjects:remove", map[string]any{"stream_id": id, "subject": map[string]any{"format": "email", "email": "a@example.com"}}, ssf.ScopeManage},
		{"POST", "/ssf/verify", map[string]any{"stream_id": id}, ssf.ScopeManage},
		{"POST", "/ssf/poll/" + id, map[string]any{"returnImmediately": true}, ssf.ScopePoll},
	}
	for _, ep := range endpoints {
		for _, auth := range []string{"", "Bearer not-a-token", "Basic " + tokenA, "Bearer "} {
			req, _ := http.NewRequest(ep.method, x.base+ep.path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := x.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q: %d %q, want 401 with a Bearer challenge", ep.method, ep.path, auth, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
		if ep.scope != "" {
			status, body, hdr := x.do(ep.method, ep.path, tokenRO, ep.body)
			if status != 403 || !strings.Contains(hdr.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Errorf("%s %s with a read-only token: %d %s, want 403 insufficient_scope", ep.method, ep.path, status, body)
			}
		}
	}
}

// Another client's stream is, for every endpoint, a stream that does not
// exist: 404, and nothing about it changes.
func TestOtherClientsStreamIs404(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	subject := map[string]any{"format": "email", "email": "a@example.com"}
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/ssf/streams?stream_id=" + id, nil},
		{"PATCH", "/ssf/streams", map[string]any{"stream_id": id, "description": "mine now"}},
		{"PUT", "/ssf/streams", map[string]any{"stream_id": id, "description": "mine now"}},
		{"DELETE", "/ssf/streams?stream_id=" + id, nil},
		{"GET", "/ssf/status?stream_id=" + id, nil},
		{"POST", "/ssf/status", map[string]any{"stream_id": id, "status": "disabled"}},
		{"POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": subject}},
		{"POST", "/ssf/subjects:remove", map[string]any{"stream_id": id, "subject": subject}},
		{"POST", "/ssf/verify", map[string]any{"stream_id": id}},
		{"POST", "/ssf/poll/" + id, map[string]any{"returnImmediately": true}},
	} {
		if status, body, _ := x.do(c.method, c.path, tokenB, c.body); status != 404 {
			t.Errorf("client b: %s %s: %d %s, want 404", c.method, c.path, status, body)
		}
		// A stream id that exists nowhere gets the same answer.
		path := strings.Replace(c.path, id, "0123456789abcdef0123456789abcdef", 1)
		var body any = c.body
		if m, ok := c.body.(map[string]any); ok {
			m2 := map[string]any{}
			for k, v := range m {
				m2[k] = v
			}
			m2["stream_id"] = "0123456789abcdef0123456789abcdef"
			body = m2
		}
		if status, b, _ := x.do(c.method, path, tokenA, body); status != 404 {
			t.Errorf("unknown stream: %s %s: %d %s, want 404", c.method, path, status, b)
		}
	}
	var all []map[string]any
	x.must(200, "GET", "/ssf/streams", tokenB, nil, &all)
	if len(all) != 0 {
		t.Fatalf("client b sees %d streams", len(all))
	}
	var st map[string]any
	x.must(200, "GET", "/ssf/streams?stream_id="+id, tokenA, nil, &st)
	if st["description"] != nil {
		t.Fatalf("client b changed client a's stream: %v", st)
	}
	var status map[string]any
	x.must(200, "GET", "/ssf/status?stream_id="+id, tokenA, nil, &status)
	if status["status"] != "enabled" {
		t.Fatalf("status %v", status)
	}
}

func TestStreamCreateReadUpdateReplaceDelete(t *testing.T) {
	x := newTX(t, txOptions{MaxStreams: 2})

	// Create: unknown URIs in events_requested are ignored; delivered is
	// supported ∩ requested; aud, iss, stream_id come from the transmitter.
	var push map[string]any
	x.must(201, "POST", "/ssf/streams", tokenB, map[string]any{
		"events_requested": []string{caepType, "urn:example:unknown", riscType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://rcv-b.example/events", "authorization_header": "Bearer secret-of-b"},
		"description":      "b's push stream",
	}, &push)
	id := push["stream_id"].(string)
	if len(id) != 32 || push["iss"] != issuer || push["description"] != "b's push stream" {
		t.Fatalf("created %v", push)
	}
	if aud, _ := push["aud"].([]any); len(aud) != 2 || aud[0] != audB {
		t.Fatalf("aud %v", push["aud"])
	}
	if got := strs(push["events_delivered"]); !slices.Equal(got, []string{caepType, riscType}) && !slices.Equal(got, []string{riscType, caepType}) {
		t.Fatalf("events_delivered %v", got)
	}
	if got := strs(push["events_requested"]); len(got) != 3 {
		t.Fatalf("events_requested %v", got)
	}
	if !slices.Contains(strs(push["events_supported"]), caepType) {
		t.Fatalf("events_supported %v", push["events_supported"])
	}
	d := push["delivery"].(map[string]any)
	if d["method"] != ssf.MethodPush || d["endpoint_url"] != "https://rcv-b.example/events" {
		t.Fatalf("delivery %v", d)
	}
	if _, leaked := d["authorization_header"]; leaked {
		t.Fatal("the receiver's authorization_header is echoed back")
	}
	if push["min_verification_interval"] != float64(3600) {
		t.Fatalf("min_verification_interval %v", push["min_verification_interval"])
	}

	// Creating a stream provisions its durable consumer.
	x.consumerExists(id, true)

	// A create without delivery is a poll stream with an assigned URL.
	var poll map[string]any
	x.must(201, "POST", "/ssf/streams", tokenB, map[string]any{"events_requested": []string{caepType}}, &poll)
	pd := poll["delivery"].(map[string]any)
	if pd["method"] != ssf.MethodPoll || pd["endpoint_url"] != x.base+"/ssf/poll/"+poll["stream_id"].(string) {
		t.Fatalf("poll delivery %v", pd)
	}

	// The third is one too many for this transmitter: 409.
	if status, b, _ := x.do("POST", "/ssf/streams", tokenB, map[string]any{}); status != 409 {
		t.Fatalf("third stream: %d %s, want 409", status, b)
	}

	// Read one and read all.
	var one map[string]any
	x.must(200, "GET", "/ssf/streams?stream_id="+id, tokenB, nil, &one)
	if one["stream_id"] != id || one["description"] != "b's push stream" {
		t.Fatalf("read %v", one)
	}
	var all []map[string]any
	x.must(200, "GET", "/ssf/streams", tokenB, nil, &all)
	if len(all) != 2 {
		t.Fatalf("read all: %d streams", len(all))
	}

	// PATCH changes only what it names; the header is kept.
	var patched map[string]any
	x.must(200, "PATCH", "/ssf/streams", tokenB, map[string]any{"stream_id": id, "events_requested": []string{riscType}}, &patched)
	if !slices.Equal(strs(patched["events_delivered"]), []string{riscType}) || patched["description"] != "b's push stream" {
		t.Fatalf("patched %v", patched)
	}
	// Transmitter-supplied members may be sent back unchanged...
	x.must(200, "PATCH", "/ssf/streams", tokenB, map[string]any{"stream_id": id, "iss": issuer, "aud": []string{audB, "https://other.example/"}, "events_delivered": []string{riscType}}, nil)
	// ...but never changed: 400.
	for name, v := range map[string]any{
		"aud": audA, "iss": "https://evil.example/", "events_supported": []string{caepType},
		"events_delivered": []string{caepType}, "min_verification_interval": 1, "inactivity_timeout": 60,
	} {
		if status, b, _ := x.do("PATCH", "/ssf/streams", tokenB, map[string]any{"stream_id": id, name: v}); status != 400 {
			t.Errorf("PATCH %s: %d %s, want 400", name, status, b)
		}
	}

	// PUT replaces the receiver-supplied members whole: the description
	// goes, and a push stream becomes a poll stream.
	var replaced map[string]any
	x.must(200, "PUT", "/ssf/streams", tokenB, map[string]any{"stream_id": id, "events_requested": []string{caepType}, "delivery": map[string]any{"method": ssf.MethodPoll}}, &replaced)
	if replaced["description"] != nil || replaced["delivery"].(map[string]any)["method"] != ssf.MethodPoll || !slices.Equal(strs(replaced["events_delivered"]), []string{caepType}) {
		t.Fatalf("replaced %v", replaced)
	}

	// Delete: 204, then 404 everywhere.
	x.must(204, "DELETE", "/ssf/streams?stream_id="+id, tokenB, nil, nil)
	x.must(404, "GET", "/ssf/streams?stream_id="+id, tokenB, nil, nil)
	x.must(404, "DELETE", "/ssf/streams?stream_id="+id, tokenB, nil, nil)
	x.consumerExists(id, false)
	x.must(200, "GET", "/ssf/streams", tokenB, nil, &all)
	if len(all) != 1 {
		t.Fatalf("after delete: %d streams", len(all))
	}
}

// Each endpoint's 400s: a body that is not its JSON, missing or invalid members.
func TestBadRequests400(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	subject := map[string]any{"format": "email", "email": "a@example.com"}
	for _, c := range []struct {
		name, method, path string
		body               any
	}{
		{"create: not JSON", "POST", "/ssf/streams", "{"},
		{"create: stream_id", "POST", "/ssf/streams", map[string]any{"stream_id": id}},
		{"create: unknown method", "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": "urn:example:carrier-pigeon"}}},
		{"create: push without URL", "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.MethodPush}}},
		{"create: push to ftp", "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "ftp://x.example/"}}},
		{"create: poll with own URL", "POST", "/ssf/streams", map[string]any{"delivery": map[string]any{"method": ssf.MethodPoll, "endpoint_url": "https://mine.example/"}}},
		{"create: events_requested not a list", "POST", "/ssf/streams", map[string]any{"events_requested": "all"}},
		{"read: bad JSON is not a thing, stream_id garbage", "GET", "/ssf/streams?stream_id=../../etc", nil},
		{"update: no stream_id", "PATCH", "/ssf/streams", map[string]any{"description": "x"}},
		{"replace: no stream_id", "PUT", "/ssf/streams", map[string]any{}},
		{"update: not JSON", "PATCH", "/ssf/streams", "[]"},
		{"delete: no stream_id", "DELETE", "/ssf/streams", nil},
		{"status get: no stream_id", "GET", "/ssf/status", nil},
		{"status: bad value", "POST", "/ssf/status", map[string]any{"stream_id": id, "status": "on"}},
		{"status: no stream_id", "POST", "/ssf/status", map[string]any{"status": "paused"}},
		{"add: no subject", "POST", "/ssf/subjects:add", map[string]any{"stream_id": id}},
		{"add: subject without format", "POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"email": "x"}}},
		{"add: complex with a bad member", "POST", "/ssf/subjects:add", map[string]any{"stream_id": id, "subject": map[string]any{"format": "complex", "user": "bob"}}},
		{"add: no stream_id", "POST", "/ssf/subjects:add", map[string]any{"subject": subject}},
		{"remove: verified", "POST", "/ssf/subjects:remove", map[string]any{"stream_id": id, "subject": subject, "verified": true}},
		{"verify: no stream_id", "POST", "/ssf/verify", map[string]any{}},
		{"verify: state not a string", "POST", "/ssf/verify", map[string]any{"stream_id": id, "state": 7}},
		{"poll: negative maxEvents", "POST", "/ssf/poll/" + id, map[string]any{"maxEvents": -1}},
		{"poll: not JSON", "POST", "/ssf/poll/" + id, "nope"},
	} {
		status, b, _ := x.do(c.method, c.path, tokenA, c.body)
		want := 400
		if c.name == "read: bad JSON is not a thing, stream_id garbage" {
			want = 404 // an id that cannot exist is an id that does not
		}
		if status != want {
			t.Errorf("%s: %d %s, want %d", c.name, status, b, want)
		}
	}
}

func strs(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// A receiver cannot make the transmitter push into its own network: push
// endpoints on internal addresses are refused (unless allowed).
func TestPushToInternalAddressesIs400(t *testing.T) {
	x := newTX(t, txOptions{PublicOnly: true})
	for _, u := range []string{
		"https://127.0.0.1/events", "https://[::1]/events", "https://10.1.2.3/events", "https://192.168.0.10/events",
		"https://169.254.169.254/latest/meta-data", "https://100.64.0.1/events", "https://0.0.0.0/events", "https://localhost/events",
	} {
		status, b, _ := x.do("POST", "/ssf/streams", tokenA, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": u}})
		if status != 400 {
			t.Errorf("%s: %d %s, want 400", u, status, b)
		}
	}
	// A public address is fine (no DNS needed for a literal).
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://203.0.113.7/events"}}, nil)
}

// critical_subject_members (§6.1) is advertised as configured.
func TestMetadataCriticalSubjectMembers(t *testing.T) {
	x := newTX(t, txOptions{Critical: []string{"tenant", "user"}})
	var md map[string]any
	x.must(200, "GET", "/.well-known/ssf-configuration/issuer1", "", nil, &md)
	got, _ := md["critical_subject_members"].([]any)
	if len(got) != 2 || got[0] != "tenant" || got[1] != "user" {
		t.Fatalf("critical_subject_members %v", md["critical_subject_members"])
	}
}

// RFC 6750 §3.1: a request without any credential gets a challenge with no
// error code ("the resource server SHOULD NOT include an error code or
// other error information"), so a receiver that probes before it has a
// token is not told its (absent) token is invalid; a token the transmitter
// does not accept gets error="invalid_token".
func TestUnauthenticatedChallengeHasNoErrorCode(t *testing.T) {
	x := newTX(t, txOptions{})
	for _, c := range []struct {
		auth      string
		wantError bool
	}{
		{"", false},
		{"Basic " + tokenA, false}, // an unsupported scheme is no bearer credential
		{"Bearer not-a-token", true},
	} {
		req, _ := http.NewRequest("GET", x.base+"/ssf/streams", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := x.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.HasPrefix(ch, "Bearer ") || !strings.Contains(ch, `realm="ssf"`) {
			t.Fatalf("%q: %d %q, want 401 with a Bearer challenge", c.auth, resp.StatusCode, ch)
		}
		if got := strings.Contains(ch, "error="); got != c.wantError {
			t.Errorf("%q: challenge %q has an error code: %v, want %v", c.auth, ch, got, c.wantError)
		}
		if c.wantError && !strings.Contains(ch, `error="invalid_token"`) {
			t.Errorf("%q: challenge %q, want error=\"invalid_token\"", c.auth, ch)
		}
	}
}

// SSF 1.0 §8.1.1: events_delivered "is a subset (not necessarily a proper
// subset) of the intersection of events_supported and events_requested".
// When the operator narrows events_supported, a stream created before
// shows, and gets, only the types still supported: the receiver never
// relies on, or receives, a type the transmitter no longer offers.
func TestEventsDeliveredFollowsEventsSupported(t *testing.T) {
	before := newTX(t, txOptions{})
	id := before.createPoll(tokenA, caepType, riscType)["stream_id"].(string)

	// The same JetStream, restarted with a narrower events_supported.
	x := newTX(t, txOptions{js: before.js, key: before.key, EventsSupported: []string{caepType}})
	var st map[string]any
	x.must(200, "GET", "/ssf/streams?stream_id="+id, tokenA, nil, &st)
	if got := strs(st["events_delivered"]); !slices.Equal(got, []string{caepType}) {
		t.Fatalf("events_delivered %v, want only %s (events_supported %v)", got, caepType, st["events_supported"])
	}
	var all []map[string]any
	x.must(200, "GET", "/ssf/streams", tokenA, nil, &all)
	if len(all) != 1 || !slices.Equal(strs(all[0]["events_delivered"]), []string{caepType}) {
		t.Fatalf("list: %v", all)
	}
	// What it shows is what §8.1.1.3 compares a request with.
	x.must(200, "PATCH", "/ssf/streams", tokenA, map[string]any{"stream_id": id, "events_delivered": []string{caepType}}, nil)

	x.publish(
		&intent.Intent{ID: "no-longer-supported", Type: "risc.account-disabled", Subject: map[string]any{"format": "email", "email": "x@example.com"}},
		sessionRevoked("still-supported", "y@example.com"),
	)
	// A long poll returns with the first SET; the RISC intent, stored
	// before it, has been decided by then.
	got := x.poll(tokenA, id, map[string]any{})
	if len(got.Sets) != 1 {
		t.Fatalf("%d SETs, want only the supported one", len(got.Sets))
	}
	for _, compact := range got.Sets {
		if typ, _ := eventOf(x.verifiedClaims(compact, audA)); typ != caepType {
			t.Fatalf("delivered %s, which events_supported no longer lists", typ)
		}
	}
}

// SSF 1.0 §8.1.1.4: "Event Receivers MAY read the configuration first,
// modify the JSON representation, then make a replacement request", and
// transmitter-supplied members sent back must match. So a configuration
// read with GET and sent back whole, by PUT or PATCH, is accepted and
// changes nothing, for push and poll streams, with aud a string (one
// audience) or an array (several).
func TestReadThenReplaceRoundTrips(t *testing.T) {
	x := newTX(t, txOptions{})
	var push map[string]any
	x.must(201, "POST", "/ssf/streams", tokenB, map[string]any{
		"events_requested": []string{caepType, "urn:example:unknown"},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://rcv-b.example/events", "authorization_header": "Bearer b"},
		"description":      "round trip",
	}, &push)
	poll := x.createPoll(tokenA, riscType)
	for _, c := range []struct {
		token string
		st    map[string]any
	}{{tokenB, push}, {tokenA, poll}} {
		id := c.st["stream_id"].(string)
		var read map[string]any
		x.must(200, "GET", "/ssf/streams?stream_id="+id, c.token, nil, &read)
		for _, method := range []string{"PUT", "PATCH"} {
			var after map[string]any
			x.must(200, method, "/ssf/streams", c.token, read, &after)
			if !reflect.DeepEqual(after, read) {
				t.Errorf("%s of what GET returned changed the stream:\n got %v\nwant %v", method, after, read)
			}
		}
	}
}
