package ssf_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/nats-io/nats.go"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
)

// payload is a SET's claims bytes, without checking the signature (the
// tests that call it have checked it already).
func payload(t *testing.T, compact string) string {
	t.Helper()
	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		t.Fatal(err)
	}
	return string(msg.Payload())
}

func TestPollDeliversAcksAndReoffers(t *testing.T) {
	x := newTX(t, txOptions{PollAckWait: time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)

	var ins []*intent.Intent
	for i := range 5 {
		ins = append(ins, sessionRevoked(idN("poll", i), "user"+strconv.Itoa(i)+"@example.com"))
	}
	// A type the stream did not request is settled without delivery.
	ins = append(ins, &intent.Intent{ID: "not-requested", Type: "risc.account-disabled", Subject: map[string]any{"format": "email", "email": "x@example.com"}})
	x.publish(ins...)

	first := x.poll(tokenA, id, map[string]any{"maxEvents": 3, "returnImmediately": true})
	if len(first.Sets) != 3 || !first.MoreAvailable {
		t.Fatalf("first poll: %d SETs, moreAvailable %v", len(first.Sets), first.MoreAvailable)
	}
	for jti, compact := range first.Sets {
		claims := x.verifiedClaims(compact, audA)
		if claims["jti"] != jti {
			t.Fatalf("sets key %s, jti %v", jti, claims["jti"])
		}
		if typ, _ := eventOf(claims); typ != caepType {
			t.Fatalf("event %s", typ)
		}
		if !strings.HasPrefix(claims["txn"].(string), "txn-poll-") {
			t.Fatalf("txn %v", claims["txn"])
		}
	}
	var acks []string
	for jti := range first.Sets {
		acks = append(acks, jti)
	}
	second := x.poll(tokenA, id, map[string]any{"maxEvents": 10, "returnImmediately": true, "ack": acks})
	if len(second.Sets) != 2 || second.MoreAvailable {
		t.Fatalf("second poll: %d SETs, moreAvailable %v", len(second.Sets), second.MoreAvailable)
	}
	for jti := range second.Sets {
		if _, dup := first.Sets[jti]; dup {
			t.Fatalf("acknowledged SET %s offered again", jti)
		}
	}
	// Nothing acknowledged: the two come back after the ack wait with the
	// same jti and the same claims.
	if again := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(again.Sets) != 0 {
		t.Fatalf("unacknowledged SETs offered again before the ack wait: %d", len(again.Sets))
	}
	time.Sleep(1500 * time.Millisecond)
	third := x.poll(tokenA, id, map[string]any{"returnImmediately": true})
	if len(third.Sets) != 2 {
		t.Fatalf("re-offer: %d SETs, want 2", len(third.Sets))
	}
	for jti, compact := range third.Sets {
		prev, ok := second.Sets[jti]
		if !ok {
			t.Fatalf("re-offered jti %s was not offered before", jti)
		}
		x.verifiedClaims(compact, audA)
		if payload(t, compact) != payload(t, prev) {
			t.Fatalf("re-offered SET's claims differ:\n%s\n%s", payload(t, compact), payload(t, prev))
		}
	}
	var rest []string
	for jti := range third.Sets {
		rest = append(rest, jti)
	}
	last := x.poll(tokenA, id, map[string]any{"maxEvents": 0, "ack": rest})
	if len(last.Sets) != 0 {
		t.Fatalf("maxEvents 0 returned %d SETs", len(last.Sets))
	}
	// Every intent is settled for the stream's consumer: the
	// Interest-retention stream is empty.
	eventually(t, 5*time.Second, "intents stream empties", func() bool { return testenv.StreamMsgs(t, x.js.JS, queue.IntentStream) == 0 })
	time.Sleep(1200 * time.Millisecond)
	if after := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(after.Sets) != 0 {
		t.Fatalf("acknowledged SETs offered again: %d", len(after.Sets))
	}
}

func TestPollSetErrsDeadLetterWithReceiversError(t *testing.T) {
	x := newTX(t, txOptions{PollAckWait: time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.publish(sessionRevoked("rejected-1", "a@example.com"))
	got := x.poll(tokenA, id, map[string]any{"returnImmediately": true})
	if len(got.Sets) != 1 {
		t.Fatalf("%d SETs", len(got.Sets))
	}
	var jti string
	for j := range got.Sets {
		jti = j
	}
	x.poll(tokenA, id, map[string]any{"maxEvents": 0, "setErrs": map[string]any{jti: map[string]any{"err": "invalid_key", "description": "kid k1 unknown here"}}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dls, err := queue.NewDLQ(x.js.JS).List(ctx, queue.Filter{Receiver: ssf.ReceiverName(id)})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	dl := dls[0]
	if dl.Reason != ssf.ReasonPollRejected || dl.Err != "invalid_key" || dl.Description != "kid k1 unknown here" || dl.IntentID != "rejected-1" || dl.Attempts != 1 {
		t.Fatalf("dead letter %+v", dl.DeadLetter)
	}
	var in intent.Intent
	if err := json.Unmarshal(dl.Intent, &in); err != nil || in.ID != "rejected-1" {
		t.Fatalf("dead letter keeps the intent: %s (%v)", dl.Intent, err)
	}
	time.Sleep(1200 * time.Millisecond)
	if again := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(again.Sets) != 0 {
		t.Fatalf("a rejected SET was offered again")
	}

	// `setrelay dlq replay` sends it to the stream again, as a corrected
	// SET with a new jti.
	if _, err := queue.NewDLQ(x.js.JS).Replay(ctx, dls[0].Seq); err != nil {
		t.Fatal(err)
	}
	replayed := x.drain(tokenA, id, 1)
	if len(replayed) != 1 || replayed[0]["jti"] == jti || replayed[0]["txn"] != "txn-rejected-1" {
		t.Fatalf("replay: %v (first jti %s)", replayed, jti)
	}
}

func TestPollLongPollWaitsForTheFirstSET(t *testing.T) {
	x := newTX(t, txOptions{MaxPollWait: 10 * time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	done := make(chan pollResp, 1)
	start := time.Now()
	go func() {
		var out pollResp
		status, b, _ := x.do("POST", "/ssf/poll/"+id, tokenA, map[string]any{"maxEvents": 10})
		if status == 200 {
			_ = json.Unmarshal(b, &out)
		}
		done <- out
	}()
	time.Sleep(300 * time.Millisecond)
	x.publish(sessionRevoked("late-1", "a@example.com"))
	select {
	case got := <-done:
		if len(got.Sets) != 1 {
			t.Fatalf("long poll returned %d SETs", len(got.Sets))
		}
		if time.Since(start) > 8*time.Second {
			t.Fatalf("long poll returned only after %s", time.Since(start))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("long poll did not return")
	}
}

func TestPollLongPollIsBounded(t *testing.T) {
	x := newTX(t, txOptions{MaxPollWait: 500 * time.Millisecond})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	start := time.Now()
	got := x.poll(tokenA, id, map[string]any{})
	if len(got.Sets) != 0 {
		t.Fatalf("%d SETs from nothing", len(got.Sets))
	}
	if el := time.Since(start); el < 400*time.Millisecond || el > 10*time.Second {
		t.Fatalf("empty long poll took %s, want about the 500ms bound", el)
	}
}

// A push stream has no poll endpoint.
func TestPollOnPushStreamIs400(t *testing.T) {
	x := newTX(t, txOptions{})
	var st map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": "https://rcv.example/events"}}, &st)
	if status, b, _ := x.do("POST", "/ssf/poll/"+st["stream_id"].(string), tokenA, map[string]any{}); status != 400 {
		t.Fatalf("%d %s", status, b)
	}
}

// A long poll of a paused stream waits out its bound instead of returning
// at once, so a receiver polling in a loop does not spin.
func TestPollLongPollOfPausedStreamWaits(t *testing.T) {
	x := newTX(t, txOptions{MaxPollWait: 500 * time.Millisecond})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)
	start := time.Now()
	if got := x.poll(tokenA, id, map[string]any{}); len(got.Sets) != 0 {
		t.Fatalf("paused stream returned %d SETs", len(got.Sets))
	}
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Fatalf("long poll of a paused stream returned after %s", el)
	}
}

// Anything on a stream's replay subject that `setrelay dlq replay` did not
// make is dead-lettered as invalid_replay, never delivered, as for push.
func TestPollForgedReplayIsDeadLettered(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	data, err := queue.Encode(sessionRevoked("forged-1", "a@example.com"), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(queue.ReplaySubject(ssf.ReceiverName(id)))
	msg.Data = data
	msg.Header.Set(queue.HeaderReplayOf, "7")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := x.js.JS.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	// A poll that returns at once may come before the stored replay is
	// available to the stream's consumer (a loaded machine), so poll until
	// it has been dead-lettered; no poll may ever return it.
	var dls []queue.StoredDeadLetter
	for ctx.Err() == nil {
		if got := x.poll(tokenA, id, map[string]any{"returnImmediately": true}); len(got.Sets) != 0 {
			t.Fatalf("a forged replay was delivered")
		}
		if dls, err = queue.NewDLQ(x.js.JS).List(ctx, queue.Filter{Receiver: ssf.ReceiverName(id)}); err != nil || len(dls) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil || len(dls) != 1 || dls[0].Reason != "invalid_replay" {
		t.Fatalf("dead letters %+v (%v)", dls, err)
	}
}

// RFC 8936 §2.4 lets a receiver acknowledge in separate requests
// (maxEvents 0), and §2.5 says moreAvailable "MAY be omitted, with the
// implication being that there are no further unacknowledged SETs": an
// acknowledge-only response must still say so when SETs are waiting, or a
// receiver that alternates acks and polls stops polling with a backlog.
func TestPollAckOnlyReportsMoreAvailable(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.publish(sessionRevoked("ack-only-1", "a@example.com"), sessionRevoked("ack-only-2", "b@example.com"))
	// Long polls where a SET is expected: on a loaded machine a message
	// just stored may not yet be ready for a no-wait fetch.
	first := x.poll(tokenA, id, map[string]any{"maxEvents": 1})
	if len(first.Sets) != 1 || !first.MoreAvailable {
		t.Fatalf("first poll: %d SETs, moreAvailable %v", len(first.Sets), first.MoreAvailable)
	}
	var acks []string
	for jti := range first.Sets {
		acks = append(acks, jti)
	}
	ackOnly := x.poll(tokenA, id, map[string]any{"maxEvents": 0, "returnImmediately": true, "ack": acks})
	if len(ackOnly.Sets) != 0 || !ackOnly.MoreAvailable {
		t.Fatalf("acknowledge-only request: %d SETs, moreAvailable %v; want none and true (one SET waits)", len(ackOnly.Sets), ackOnly.MoreAvailable)
	}
	second := x.poll(tokenA, id, map[string]any{"maxEvents": 10})
	if len(second.Sets) != 1 || second.MoreAvailable {
		t.Fatalf("second poll: %d SETs, moreAvailable %v", len(second.Sets), second.MoreAvailable)
	}
	for jti := range second.Sets {
		acks = []string{jti}
	}
	if last := x.poll(tokenA, id, map[string]any{"maxEvents": 0, "returnImmediately": true, "ack": acks}); last.MoreAvailable {
		t.Fatal("acknowledge-only request with nothing left says moreAvailable")
	}
}
