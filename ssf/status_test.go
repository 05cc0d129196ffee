package ssf_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// drain polls (acknowledging as it goes) until n SETs arrived or nothing
// more comes, and returns their claims in arrival order.
func (x *tx) drain(token, id string, n int) []map[string]any {
	x.t.Helper()
	return x.drainURL(token, "/ssf/poll/"+id, n)
}

// drainURL is drain against a poll endpoint URL, as the stream gave it.
func (x *tx) drainURL(token, pollURL string, n int) []map[string]any {
	x.t.Helper()
	var out []map[string]any
	var acks []string
	for empty := 0; len(out) < n && empty < 3; {
		var r pollResp
		x.must(200, "POST", pollURL, token, map[string]any{"maxEvents": 100, "returnImmediately": true, "ack": acks}, &r)
		acks = acks[:0]
		if len(r.Sets) == 0 {
			empty++
			time.Sleep(50 * time.Millisecond)
			continue
		}
		batch := make([]map[string]any, 0, len(r.Sets))
		for jti, compact := range r.Sets {
			batch = append(batch, x.verifiedClaims(compact, audA))
			acks = append(acks, jti)
		}
		// A poll response is a JSON object: its order is lost. The
		// stored order within a response is the toe order here.
		sortByTxn(batch)
		out = append(out, batch...)
	}
	if len(acks) > 0 {
		x.must(200, "POST", pollURL, token, map[string]any{"maxEvents": 0, "ack": acks}, nil)
	}
	return out
}

func sortByTxn(b []map[string]any) {
	txn := func(c map[string]any) string { s, _ := c["txn"].(string); return s }
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && txn(b[j]) < txn(b[j-1]); j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
}

func TestStatusPausedHoldsAndDisabledDrops(t *testing.T) {
	x := newTX(t, txOptions{PollAckWait: 5 * time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)

	var status map[string]any
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused", "reason": "maintenance"}, &status)
	if status["status"] != "paused" || status["reason"] != "maintenance" || status["stream_id"] != id {
		t.Fatalf("status %v", status)
	}
	x.must(200, "GET", "/ssf/status?stream_id="+id, tokenA, nil, &status)
	if status["status"] != "paused" || status["reason"] != "maintenance" {
		t.Fatalf("status %v", status)
	}

	// 1,000 intents about 10 subjects while paused: none is delivered...
	const n = 1000
	var ins []*intent.Intent
	for i := range n {
		in := sessionRevoked(idN("held", i), fmt.Sprintf("user%d@example.com", i%10))
		in.Txn = fmt.Sprintf("txn-%05d", i)
		ins = append(ins, in)
	}
	x.publish(ins...)
	if r := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(r.Sets) != 0 {
		t.Fatalf("a paused stream delivered %d SETs", len(r.Sets))
	}
	// ...and all arrive after enabling, in stored order for each subject.
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	got := x.drain(tokenA, id, n)
	if len(got) != n {
		t.Fatalf("after enabling: %d of %d held SETs arrived", len(got), n)
	}
	last := map[string]int{}
	seen := map[string]bool{}
	for _, c := range got {
		email := c["sub_id"].(map[string]any)["email"].(string)
		seq, _ := strconv.Atoi(c["txn"].(string)[4:])
		if prev, ok := last[email]; ok && seq <= prev {
			t.Fatalf("subject %s: txn %d after %d", email, seq, prev)
		}
		last[email] = seq
		seen[c["jti"].(string)] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct jti, want %d", len(seen), n)
	}

	// Disabled holds nothing: 100 intents published while disabled never
	// arrive, and the stream carries on with the next one.
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "disabled", "reason": "going away"}, nil)
	x.consumerExists(id, false)
	ins = ins[:0]
	for i := range 100 {
		in := sessionRevoked(idN("dropped", i), "user@example.com")
		ins = append(ins, in)
	}
	x.publish(ins...)
	if r := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(r.Sets) != 0 {
		t.Fatalf("a disabled stream delivered %d SETs", len(r.Sets))
	}
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	after := sessionRevoked("after-enable", "user@example.com")
	after.Txn = "txn-after"
	x.publish(after)
	got = x.drain(tokenA, id, 101)
	if len(got) != 1 || got[0]["txn"] != "txn-after" {
		t.Fatalf("after re-enabling: %d SETs (%v), want only the one published after", len(got), got)
	}
}

func TestVerificationOnPollStream(t *testing.T) {
	x := newTX(t, txOptions{MinVerify: time.Hour})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRl"}, nil)
	status, body, hdr := x.do("POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "again"})
	if status != 429 || hdr.Get("Retry-After") == "" {
		t.Fatalf("second verification within the interval: %d %s (Retry-After %q), want 429", status, body, hdr.Get("Retry-After"))
	}
	got := x.drain(tokenA, id, 1)
	if len(got) != 1 {
		t.Fatalf("%d verification SETs", len(got))
	}
	c := got[0]
	typ, ev := eventOf(c)
	if typ != intent.SSFPrefix+"verification" || ev["state"] != "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRl" {
		t.Fatalf("verification SET: %v", c)
	}
	sub := c["sub_id"].(map[string]any)
	if sub["format"] != "opaque" || sub["id"] != id || len(sub) != 2 {
		t.Fatalf("sub_id %v", sub)
	}
}

// Without state the verification event carries none; the interval runs
// from the last accepted request.
func TestVerificationWithoutStateAndInterval(t *testing.T) {
	x := newTX(t, txOptions{MinVerify: time.Second})
	id := x.createPoll(tokenA)["stream_id"].(string)
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id}, nil)
	x.must(429, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id}, nil)
	time.Sleep(1100 * time.Millisecond)
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id}, nil)
	got := x.drain(tokenA, id, 2)
	if len(got) != 2 {
		t.Fatalf("%d verification SETs, want 2", len(got))
	}
	for _, c := range got {
		if _, ev := eventOf(c); len(ev) != 0 {
			t.Fatalf("verification without state carries %v", ev)
		}
	}
}

// TestVerificationOnDisabledStream: a disabled stream transmits and holds
// nothing, so a verification request gets 400 rather than a 204 that
// promises an event that never comes (SSF 1.0 §8.1.4.2), and it does not
// use up min_verification_interval; once enabled, verification works. A
// paused stream holds the event: 204, delivered after enabling.
func TestVerificationOnDisabledStream(t *testing.T) {
	x := newTX(t, txOptions{MinVerify: time.Hour, PollAckWait: 5 * time.Second})
	id := x.createPoll(tokenA)["stream_id"].(string)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "disabled"}, nil)
	status, body, _ := x.do("POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "lost"})
	if status != 400 || !strings.Contains(string(body), "disabled") {
		t.Fatalf("verification on a disabled stream: %d %s, want 400 saying it is disabled", status, body)
	}
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "held"}, nil)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	got := x.drain(tokenA, id, 1)
	if len(got) != 1 {
		t.Fatalf("%d SETs after enabling, want the held verification", len(got))
	}
	if typ, ev := eventOf(got[0]); typ != intent.SSFPrefix+"verification" || ev["state"] != "held" {
		t.Fatalf("got %s %v, want the verification with state held", typ, ev)
	}
}

// SSF 1.0 §8.1.1: a transmitter "SHOULD NOT respond with a 429 status code
// if an Event Receiver is not exceeding" min_verification_interval. A
// request the transmitter failed to queue (its event store unreachable:
// 5xx) was not a verification, so it does not use up the interval: the
// receiver's retry is served, not refused as too soon.
func TestVerificationFailureDoesNotUseUpTheInterval(t *testing.T) {
	x := newTX(t, txOptions{MinVerify: time.Hour})
	id := x.createPoll(tokenA)["stream_id"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := x.js.JS.DeleteStream(ctx, queue.IntentStream); err != nil {
		t.Fatal(err)
	}
	if status, b, _ := x.do("POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "s1"}); status < 500 {
		t.Fatalf("verification with the intents stream gone: %d %s, want a 5xx", status, b)
	}
	if err := queue.Provision(ctx, x.js.JS, queue.Config{}, nil); err != nil {
		t.Fatal(err)
	}
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "s2"}, nil)
	// The interval now runs from the request that was served.
	x.must(429, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "s3"}, nil)
}
