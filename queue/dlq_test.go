package queue_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

func TestDeadLetterJSONPreservesIntentBytesExactly(t *testing.T) {
	tests := []struct {
		name     string
		intent   []byte
		wantB64  bool
		inlineAs string
	}{
		{"compact JSON inline", []byte(`{"id":"a","type":"x"}`), false, `"intent":{"id":"a","type":"x"}`},
		{"compact non-ASCII inline", []byte(`{"id":"a","event":{"reason_user":"café"}}`), false, `"intent":{"id":"a","event":{"reason_user":"café"}}`},
		// json.Marshal re-compacts and HTML-escapes a MarshalJSON result, so
		// these could not survive inline.
		{"pretty JSON base64", []byte("{\n  \"id\": \"a\"\n}"), true, ""},
		{"HTML characters base64", []byte(`{"id":"<a&b>"}`), true, ""},
		{"trailing newline base64", []byte("{\"id\":\"a\"}\n"), true, ""},
		{"invalid UTF-8 base64", []byte("{\"id\":\"\xff\xfe\"}"), true, ""},
		{"garbage base64", []byte("not json at all"), true, ""},
		{"empty", nil, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dl := queue.DeadLetter{Receiver: "govuk", Reason: "invalid_intent", Intent: tt.intent, StreamSeq: 3, Errors: []string{"id: required"}}
			data, err := json.Marshal(dl)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(data) {
				t.Fatalf("not valid JSON: %s", data)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(data, &raw); err != nil {
				t.Fatal(err)
			}
			if _, has := raw["intent_b64"]; has != tt.wantB64 {
				t.Errorf("intent_b64 present = %v, want %v: %s", has, tt.wantB64, data)
			}
			if tt.inlineAs != "" && !strings.Contains(string(data), tt.inlineAs) {
				t.Errorf("intent not inlined verbatim: %s", data)
			}
			var back queue.DeadLetter
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if string(back.Intent) != string(tt.intent) {
				t.Errorf("intent bytes changed: %q -> %q", tt.intent, back.Intent)
			}
			if back.Receiver != "govuk" || back.StreamSeq != 3 || len(back.Errors) != 1 {
				t.Errorf("fields lost: %+v", back)
			}
		})
	}
}

// seedDLQ stores dead letters: govuk 1 (http_5xx), acme 2 (invalid_audience),
// govuk 3 (invalid_audience), with a pause so Since/Until can split them.
func seedDLQ(t *testing.T, env *testEnv) (split time.Time) {
	t.Helper()
	put := func(receiver, reason string, seq uint64) {
		dl := queue.DeadLetter{
			Receiver: receiver, Reason: reason, Status: 400, Err: "invalid_audience", Description: "aud mismatch",
			Body: `{"err":"invalid_audience"}`, Attempts: 1, FirstAttempt: time.Now().UTC(), LastAttempt: time.Now().UTC(),
			StreamSeq: seq, IntentID: "intent-" + strconv.FormatUint(seq, 10), Intent: intentBytes(t, "intent-"+strconv.FormatUint(seq, 10)),
		}
		if err := queue.PublishDeadLetter(ctxT(t), env.js, dl); err != nil {
			t.Fatal(err)
		}
	}
	put("govuk", "http_5xx", 1)
	put("acme", "invalid_audience", 2)
	time.Sleep(20 * time.Millisecond)
	split = time.Now()
	time.Sleep(20 * time.Millisecond)
	put("govuk", "invalid_audience", 3)
	return split
}

func TestDLQListFilters(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	split := seedDLQ(t, env)
	d := queue.NewDLQ(env.js)
	tests := []struct {
		name string
		f    queue.Filter
		want []uint64 // original stream seqs
	}{
		{"all", queue.Filter{}, []uint64{1, 2, 3}},
		{"receiver", queue.Filter{Receiver: "govuk"}, []uint64{1, 3}},
		{"reason", queue.Filter{Reason: "invalid_audience"}, []uint64{2, 3}},
		{"receiver and reason", queue.Filter{Receiver: "govuk", Reason: "invalid_audience"}, []uint64{3}},
		{"since", queue.Filter{Since: split}, []uint64{3}},
		{"until", queue.Filter{Until: split}, []uint64{1, 2}},
		{"limit", queue.Filter{Limit: 2}, []uint64{1, 2}},
		{"no match", queue.Filter{Receiver: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.List(ctxT(t), tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []uint64
			for _, s := range got {
				seqs = append(seqs, s.StreamSeq)
			}
			if len(seqs) != len(tt.want) {
				t.Fatalf("got %v, want %v", seqs, tt.want)
			}
			for i := range seqs {
				if seqs[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", seqs, tt.want)
				}
			}
		})
	}
}

func TestDLQDuplicateDeadLetterIsDeduplicated(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	dl := queue.DeadLetter{Receiver: "govuk", Reason: "http_4xx", StreamSeq: 77, Intent: intentBytes(t, "x")}
	for range 2 { // a worker crashed between the DLQ ack and Term, then retried
		if err := queue.PublishDeadLetter(ctxT(t), env.js, dl); err != nil {
			t.Fatal(err)
		}
	}
	if n := streamMsgs(t, env.js, queue.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d, want 1", n)
	}
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "govuk"}); err == nil {
		t.Error("dead letter without a reason accepted")
	}
}

func TestDLQGetShowsEverything(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	seedDLQ(t, env)
	d := queue.NewDLQ(env.js)
	all, err := d.List(ctxT(t), queue.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := d.Get(ctxT(t), all[1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got.Receiver != "acme" || got.Reason != "invalid_audience" || got.Status != 400 || got.Err != "invalid_audience" ||
		got.Description != "aud mismatch" || got.Attempts != 1 || got.IntentID != "intent-2" || got.Stored.IsZero() ||
		string(got.Intent) != string(intentBytes(t, "intent-2")) {
		t.Errorf("Get = %+v", got)
	}
	// The JSON form (dlq list --json) keeps seq and stored time.
	data, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back queue.StoredDeadLetter
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Seq != got.Seq || !back.Stored.Equal(got.Stored) || back.Reason != got.Reason || string(back.Intent) != string(got.Intent) {
		t.Errorf("JSON round trip lost fields: %s", data)
	}
	if _, err := d.Get(ctxT(t), 999); !errors.Is(err, queue.ErrDeadLetterNotFound) {
		t.Errorf("Get(999): %v", err)
	}
}

func TestDLQReplayRequeuesForItsReceiverThenDeletes(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	seedDLQ(t, env)
	d := queue.NewDLQ(env.js)
	list, err := d.List(ctxT(t), queue.Filter{Receiver: "acme"})
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	dlqSeq := list[0].Seq

	res, err := d.Replay(ctxT(t), dlqSeq)
	if err != nil {
		t.Fatal(err)
	}
	if res.Receiver != "acme" || res.IntentID != "intent-2" || res.Duplicate || res.Sequence == 0 {
		t.Errorf("ReplayResult %+v", res)
	}
	msgs := fetchAll(t, env.js, "acme", 1, 5*time.Second)
	if len(msgs) != 1 {
		t.Fatal("replay did not reach acme's consumer")
	}
	m := msgs[0]
	// The replay is on the intent's slot, so that an ordered receiver's
	// partition takes it in line with newer intents about the subject.
	slot := queue.SubjectSlot(map[string]any{"format": "email", "email": "alice@example.com"})
	wantSubj := strings.Replace(queue.SlotSubject(slot), "setrelay.intent.", "setrelay.replay.", 1) + ".acme"
	if !queue.IsReplayFor(m.Subject(), "acme") || m.Subject() != wantSubj || string(m.Data()) != string(intentBytes(t, "intent-2")) ||
		m.Headers().Get(queue.HeaderReplayOf) != strconv.FormatUint(dlqSeq, 10) ||
		m.Headers().Get(jetstream.MsgIDHeader) != "replay-acme-"+strconv.FormatUint(dlqSeq, 10)+"-"+m.Headers().Get(queue.HeaderReplayMAC) {
		t.Errorf("replayed message: subject %s headers %v data %s", m.Subject(), m.Headers(), m.Data())
	}
	if of, ok := queue.ReplayOf(m.Headers()); !ok || of != dlqSeq {
		t.Errorf("ReplayOf = %d, %v; want %d", of, ok, dlqSeq)
	}
	// The replay is signed for acme, this dead letter and these bytes, and
	// for nothing else.
	keys := queue.NewReplayKeys(env.js)
	if seq, err := keys.Verify(ctxT(t), "acme", m.Headers(), m.Data()); err != nil || seq != dlqSeq {
		t.Errorf("Verify(acme) = %d, %v; want %d", seq, err, dlqSeq)
	}
	if _, err := keys.Verify(ctxT(t), "govuk", m.Headers(), m.Data()); !errors.Is(err, queue.ErrInvalidReplay) {
		t.Errorf("Verify(govuk) = %v, want ErrInvalidReplay", err)
	}
	if _, err := keys.Verify(ctxT(t), "acme", m.Headers(), append([]byte(" "), m.Data()...)); !errors.Is(err, queue.ErrInvalidReplay) {
		t.Errorf("Verify(other bytes) = %v, want ErrInvalidReplay", err)
	}
	steered := nats.Header{}
	for k, v := range m.Headers() {
		steered[k] = v
	}
	steered.Set(queue.HeaderReplayOf, strconv.FormatUint(dlqSeq+1, 10))
	if _, err := keys.Verify(ctxT(t), "acme", steered, m.Data()); !errors.Is(err, queue.ErrInvalidReplay) {
		t.Errorf("Verify(other Replay-Of) = %v, want ErrInvalidReplay", err)
	}
	// govuk's consumer sees every subject; the worker skips a replay
	// whose subject is not its own.
	for _, m := range fetchAll(t, env.js, "govuk", 5, 300*time.Millisecond) {
		if queue.IsReplayFor(m.Subject(), "govuk") {
			t.Errorf("replay for acme on govuk's replay subject %s", m.Subject())
		}
	}
	if _, err := d.Get(ctxT(t), dlqSeq); !errors.Is(err, queue.ErrDeadLetterNotFound) {
		t.Errorf("dead letter still there after replay: %v", err)
	}
	if _, err := d.Replay(ctxT(t), dlqSeq); !errors.Is(err, queue.ErrDeadLetterNotFound) {
		t.Errorf("second replay: %v", err)
	}
}

func TestDLQReplayKeepsDeadLetterWhenNotStored(t *testing.T) {
	cfg := testConfig(t)
	cfg.StreamMaxMsgs = 1
	env := startEnv(t, cfg, "govuk")
	// Fill the intents stream so the replay cannot be stored.
	if _, err := queue.NewPublisher(env.js, optsNone).Publish(ctxT(t), newIntent("filler")); err != nil {
		t.Fatal(err)
	}
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "govuk", Reason: "http_5xx", StreamSeq: 5, Intent: intentBytes(t, "lost?")}); err != nil {
		t.Fatal(err)
	}
	d := queue.NewDLQ(env.js)
	list, err := d.List(ctxT(t), queue.Filter{})
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	if _, err := d.Replay(ctxT(t), list[0].Seq); !errors.Is(err, queue.ErrStreamFull) {
		t.Fatalf("replay into a full stream: %v, want ErrStreamFull", err)
	}
	if _, err := d.Get(ctxT(t), list[0].Seq); err != nil {
		t.Fatalf("dead letter deleted although its replay was not stored: %v", err)
	}

	// A receiver without a consumer would drop the replay (Interest
	// retention): refused, dead letter kept.
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "gone", Reason: "http_5xx", StreamSeq: 6, Intent: intentBytes(t, "g")}); err != nil {
		t.Fatal(err)
	}
	gone, err := d.List(ctxT(t), queue.Filter{Receiver: "gone"})
	if err != nil || len(gone) != 1 {
		t.Fatalf("list gone: %v %v", gone, err)
	}
	if _, err := d.Replay(ctxT(t), gone[0].Seq); err == nil {
		t.Fatal("replay for a receiver without a consumer succeeded")
	}
	if _, err := d.Get(ctxT(t), gone[0].Seq); err != nil {
		t.Fatalf("dead letter of unconsumed receiver deleted: %v", err)
	}
}

func TestDLQReplayAfterCrashIsDeduplicated(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "govuk", Reason: "http_5xx", StreamSeq: 1, Intent: intentBytes(t, "c")}); err != nil {
		t.Fatal(err)
	}
	d := queue.NewDLQ(env.js)
	list, _ := d.List(ctxT(t), queue.Filter{})
	// Simulate a replay that stored its message and crashed before deleting:
	// the same headers Replay sets, MAC included.
	seq := list[0].Seq
	mac, err := queue.NewReplayKeys(env.js).Sign(ctxT(t), "govuk", seq, list[0].Intent)
	if err != nil {
		t.Fatal(err)
	}
	hdr := map[string][]string{queue.HeaderReplayOf: {strconv.FormatUint(seq, 10)}, queue.HeaderReplayMAC: {mac}, jetstream.MsgIDHeader: {queue.ReplayMsgID("govuk", seq, mac)}}
	if _, err := env.js.PublishMsg(ctxT(t), &natsMsg{Subject: queue.ReplaySubject("govuk"), Data: list[0].Intent, Header: hdr}); err != nil {
		t.Fatal(err)
	}
	res, err := d.Replay(ctxT(t), seq)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Duplicate {
		t.Errorf("second replay stored again: %+v", res)
	}
	if n := streamMsgs(t, env.js, queue.IntentStream); n != 1 {
		t.Errorf("intents stream holds %d replays, want 1", n)
	}
}

func TestDLQPurgeByFilter(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	seedDLQ(t, env)
	d := queue.NewDLQ(env.js)
	n, err := d.Purge(ctxT(t), queue.Filter{Reason: "invalid_audience"})
	if err != nil || n != 2 {
		t.Fatalf("Purge = %d, %v; want 2", n, err)
	}
	left, err := d.List(ctxT(t), queue.Filter{})
	if err != nil || len(left) != 1 || left[0].Reason != "http_5xx" {
		t.Fatalf("left %+v, %v", left, err)
	}
	n, err = d.Purge(ctxT(t), queue.Filter{})
	if err != nil || n != 1 {
		t.Fatalf("Purge all = %d, %v", n, err)
	}
	if n := streamMsgs(t, env.js, queue.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d after purge", n)
	}
}

type natsMsg = nats.Msg

func TestReplayOfHeader(t *testing.T) {
	tests := []struct {
		value  string
		want   uint64
		wantOK bool
	}{
		{"", 0, false},
		{"17", 17, true},
		{"0", 0, false},
		{"-3", 0, false},
		{"x", 0, false},
	}
	for _, tt := range tests {
		h := nats.Header{}
		if tt.value != "" {
			h.Set(queue.HeaderReplayOf, tt.value)
		}
		if got, ok := queue.ReplayOf(h); got != tt.want || ok != tt.wantOK {
			t.Errorf("ReplayOf(%q) = %d, %v", tt.value, got, ok)
		}
	}
}

// TestReplayKeyProvisionedOnce: every Provision keeps the first key, so
// processes provisioning side by side and restarts agree on it, and replays
// signed before a restart still verify.
func TestReplayKeyProvisionedOnce(t *testing.T) {
	cfg := testConfig(t)
	env := startEnv(t, cfg, "acme")
	before, err := queue.NewReplayKeys(env.js).Sign(ctxT(t), "acme", 1, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"acme"}); err != nil {
		t.Fatal(err)
	}
	after, err := queue.NewReplayKeys(env.js).Sign(ctxT(t), "acme", 1, []byte("x"))
	if err != nil || after != before {
		t.Fatalf("key changed on provisioning again: %q then %q (%v)", before, after, err)
	}
}

// A producer may set any Nats-Msg-Id on an intent (the server deduplicates
// on the header, whatever the subject). One that takes the id a replay of
// a dead letter would use must not make that replay a "duplicate" that is
// never stored while the dead letter, its only copy, is deleted.
func TestDLQReplayIDCannotBeTakenByAProducer(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "govuk", Reason: "http_5xx", StreamSeq: 1, Intent: intentBytes(t, "victim")}); err != nil {
		t.Fatal(err)
	}
	d := queue.NewDLQ(env.js)
	list, err := d.List(ctxT(t), queue.Filter{})
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
	seq := list[0].Seq
	// DLQ sequences are predictable; a producer publishes an ordinary
	// intent whose id is the old replay id of that sequence, and ids of
	// the same shape for the next ones.
	for _, id := range []string{"replay-govuk-" + strconv.FormatUint(seq, 10), "replay-govuk-" + strconv.FormatUint(seq, 10) + "-x"} {
		if _, err := queue.NewPublisher(env.js, optsNone).PublishRaw(ctxT(t), id, intentBytes(t, id), nil); err != nil {
			t.Fatal(err)
		}
	}
	res, err := d.Replay(ctxT(t), seq)
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if res.Duplicate {
		t.Fatalf("replay reported a duplicate of the producer's intent (seq %d): it was not stored", res.Sequence)
	}
	s, err := env.js.Stream(ctxT(t), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetMsg(ctxT(t), res.Sequence)
	if err != nil {
		t.Fatalf("replay seq %d not in the intents stream: %v", res.Sequence, err)
	}
	if got, ok := queue.ReplayOf(raw.Header); !ok || got != seq || string(raw.Data) != string(intentBytes(t, "victim")) {
		t.Errorf("intent seq %d is not the replay of dead letter %d: headers %v data %s", res.Sequence, seq, raw.Header, raw.Data)
	}
}
