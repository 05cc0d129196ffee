package ssf_test

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// TestReceiverLifecycle is the whole life of a receiver's streams, driven
// over HTTPS as a receiver's engineer would, with every SET checked by an
// independent JOSE library: discover; create a push and a poll stream;
// read, update and replace them; add and remove subjects; verification
// with state on both; pause, 1,000 intents, enable: all arrive in stored
// order per subject; disable, 100 intents, enable: none arrives; delete.
func TestReceiverLifecycle(t *testing.T) {
	rcv := newPushReceiver(t)
	x := newTX(t, txOptions{RootCAs: rcv.roots(), MinVerify: time.Hour, PollAckWait: 10 * time.Second})
	d := startDispatcher(t, x)

	// Discover, starting from the issuer.
	var md map[string]any
	x.must(200, "GET", "/.well-known/ssf-configuration/issuer1", "", nil, &md)
	if md["issuer"] != issuer {
		t.Fatalf("issuer %v", md["issuer"])
	}
	cfgEndpoint := md["configuration_endpoint"].(string)

	// Create a push stream and a poll stream.
	var push, poll map[string]any
	x.must(201, "POST", cfgEndpoint, tokenA, map[string]any{
		"events_requested": []string{caepType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events", "authorization_header": "Bearer push-secret"},
		"description":      "push",
	}, &push)
	x.must(201, "POST", cfgEndpoint, tokenA, map[string]any{"events_requested": []string{riscType}, "delivery": map[string]any{"method": ssf.MethodPoll}}, &poll)
	pushID, pollID := push["stream_id"].(string), poll["stream_id"].(string)
	pollURL := poll["delivery"].(map[string]any)["endpoint_url"].(string)

	// Read, update, replace.
	var all []map[string]any
	x.must(200, "GET", cfgEndpoint, tokenA, nil, &all)
	if len(all) != 2 {
		t.Fatalf("read all: %d", len(all))
	}
	x.must(200, "PATCH", cfgEndpoint, tokenA, map[string]any{"stream_id": pollID, "events_requested": []string{riscType, caepType}}, nil)
	var replaced map[string]any
	x.must(200, "PUT", cfgEndpoint, tokenA, map[string]any{"stream_id": pollID, "events_requested": []string{caepType}, "description": "poll", "delivery": map[string]any{"method": ssf.MethodPoll}}, &replaced)
	if replaced["description"] != "poll" || len(strs(replaced["events_delivered"])) != 1 {
		t.Fatalf("replaced %v", replaced)
	}
	eventually(t, 2*time.Second, "push stream served", func() bool { return len(d.Serving()) == 1 })

	// Subjects: under ALL, removing one stops its events on that stream.
	x.must(204, "POST", md["remove_subject_endpoint"].(string), tokenA, map[string]any{"stream_id": pollID, "subject": email("muted@example.com")}, nil)
	x.must(200, "POST", md["add_subject_endpoint"].(string), tokenA, map[string]any{"stream_id": pollID, "subject": email("kept@example.com"), "verified": true}, nil)
	x.publish(subjectEvent("muted-1", email("muted@example.com")), subjectEvent("kept-1", email("kept@example.com")))
	if got := txns(x.drainURL(tokenA, pollURL, 2)); len(got) != 1 || !got["kept-1"] {
		t.Fatalf("poll stream after removing a subject: %v", got)
	}
	eventually(t, 10*time.Second, "the push stream gets both", func() bool { return rcv.count() == 2 })

	// Verification with state, on both streams.
	for _, id := range []string{pushID, pollID} {
		x.must(204, "POST", md["verification_endpoint"].(string), tokenA, map[string]any{"stream_id": id, "state": "state-" + id}, nil)
	}
	eventually(t, 10*time.Second, "push verification", func() bool { return rcv.count() == 3 })
	sets, _ := rcv.got()
	if typ, ev := eventOf(x.verifiedClaims(sets[2], audA)); typ != intent.SSFPrefix+"verification" || ev["state"] != "state-"+pushID {
		t.Fatalf("push verification: %s %v", typ, ev)
	}
	got := x.drainURL(tokenA, pollURL, 1)
	if len(got) != 1 {
		t.Fatalf("poll verification: %d SETs", len(got))
	}
	if typ, ev := eventOf(got[0]); typ != intent.SSFPrefix+"verification" || ev["state"] != "state-"+pollID {
		t.Fatalf("poll verification: %s %v", typ, ev)
	}

	// Pause both, publish 1,000 about 10 subjects, enable: all arrive, in
	// stored order per subject.
	for _, id := range []string{pushID, pollID} {
		x.must(200, "POST", md["status_endpoint"].(string), tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)
	}
	const n = 1000
	ins := make([]*intent.Intent, n)
	for i := range n {
		ins[i] = sessionRevoked(idN("life", i), fmt.Sprintf("user%d@example.com", i%10))
		ins[i].Txn = fmt.Sprintf("txn-%05d", i)
	}
	x.publish(ins...)
	time.Sleep(300 * time.Millisecond)
	if c := rcv.count(); c != 3 {
		t.Fatalf("paused push stream pushed: %d", c)
	}
	for _, id := range []string{pushID, pollID} {
		x.must(200, "POST", md["status_endpoint"].(string), tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	}
	checkOrder := func(what string, claims []map[string]any) {
		t.Helper()
		if len(claims) != n {
			t.Fatalf("%s: %d of %d held SETs arrived", what, len(claims), n)
		}
		last := map[string]int{}
		for _, c := range claims {
			who := c["sub_id"].(map[string]any)["email"].(string)
			seq, _ := strconv.Atoi(c["txn"].(string)[4:])
			if p, ok := last[who]; ok && seq <= p {
				t.Fatalf("%s: %s got txn %d after %d", what, who, seq, p)
			}
			last[who] = seq
		}
	}
	checkOrder("poll", x.drainURL(tokenA, pollURL, n))
	eventually(t, 60*time.Second, "push: 1,000 held SETs", func() bool { return rcv.count() >= 3+n })
	sets, _ = rcv.got()
	var pushed []map[string]any
	for _, s := range sets[3:] {
		pushed = append(pushed, x.verifiedClaims(s, audA))
	}
	// A push stream has one push in flight by default, so arrival order is
	// stored order.
	checkOrder("push", pushed)

	// Disable both, publish 100, enable: none of the 100 arrives.
	for _, id := range []string{pushID, pollID} {
		x.must(200, "POST", md["status_endpoint"].(string), tokenA, map[string]any{"stream_id": id, "status": "disabled"}, nil)
	}
	drop := make([]*intent.Intent, 100)
	for i := range drop {
		drop[i] = sessionRevoked(idN("dropped", i), "user1@example.com")
	}
	x.publish(drop...)
	for _, id := range []string{pushID, pollID} {
		x.must(200, "POST", md["status_endpoint"].(string), tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	}
	time.Sleep(time.Second)
	if got := x.drainURL(tokenA, pollURL, 100); len(got) != 0 {
		t.Fatalf("poll: %d SETs published while disabled arrived", len(got))
	}
	if c := rcv.count(); c != 3+n {
		t.Fatalf("push: %d SETs published while disabled arrived", c-3-n)
	}

	// Delete both.
	for _, id := range []string{pushID, pollID} {
		x.must(204, "DELETE", cfgEndpoint+"?stream_id="+id, tokenA, nil, nil)
		x.consumerExists(id, false)
	}
	x.must(200, "GET", cfgEndpoint, tokenA, nil, &all)
	if len(all) != 0 {
		t.Fatalf("after delete: %d streams", len(all))
	}
}
