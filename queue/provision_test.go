package queue_test

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

func TestConsumerNameSanitises(t *testing.T) {
	tests := []struct{ receiver, want string }{
		{"govuk", "rcv_govuk"},
		{"Gov-UK_2", "rcv_Gov-UK_2"},
		{"acme.example.com", "rcv_acme_example_com"},
		{"a b/c*>", "rcv_a_b_c__"},
		{"café", "rcv_caf__"},
	}
	for _, tt := range tests {
		if got := queue.ConsumerName(tt.receiver); got != tt.want {
			t.Errorf("ConsumerName(%q) = %q, want %q", tt.receiver, got, tt.want)
		}
	}
	if got := queue.ReplaySubject("acme.example.com"); got != "setrelay.replay.acme_example_com" {
		t.Errorf("ReplaySubject = %q: a dot would add a subject level", got)
	}
}

func TestProvisionRejectsCollidingReceivers(t *testing.T) {
	env := startEnv(t, testConfig(t))
	err := queue.Provision(ctxT(t), env.js, env.cfg, []string{"a.b", "a_b"})
	if err == nil {
		t.Fatal("two receivers sharing consumer rcv_a_b were accepted")
	}
}

func TestProvisionIsIdempotentAndUpdates(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAckPending = 100
	env := startEnv(t, cfg, "govuk", "acme")

	// Same config again: no error, nothing changes.
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"govuk", "acme"}); err != nil {
		t.Fatalf("second Provision: %v", err)
	}
	// Changed MaxAckPending is applied in place.
	cfg.MaxAckPending = 7
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"govuk", "acme"}); err != nil {
		t.Fatalf("Provision with new MaxAckPending: %v", err)
	}

	s, err := env.js.Stream(ctxT(t), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := info.Config
	if sc.Retention != jetstream.InterestPolicy || sc.Discard != jetstream.DiscardNew || sc.MaxAge != 0 ||
		sc.Storage != jetstream.FileStorage || sc.Duplicates != queue.DefaultDuplicateWindow {
		t.Errorf("intents stream config = retention %v discard %v maxage %v storage %v dup %v", sc.Retention, sc.Discard, sc.MaxAge, sc.Storage, sc.Duplicates)
	}
	// Every slot subject by name (not setrelay.intent.*.*: see
	// TestNoSlotSubjectIsRefusedAtPublish), between the older layouts
	// and the replays.
	wantSubjects := []string{"setrelay.intent", "setrelay.intent.*"}
	for slot := range queue.Slots {
		wantSubjects = append(wantSubjects, queue.SlotSubject(slot))
	}
	wantSubjects = append(wantSubjects, "setrelay.replay.>")
	if !slices.Equal(sc.Subjects, wantSubjects) {
		t.Errorf("subjects = %v", sc.Subjects)
	}
	if info.State.Consumers != 2 {
		t.Errorf("consumers = %d, want 2", info.State.Consumers)
	}

	for _, r := range []string{"govuk", "acme"} {
		c, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName(r))
		if err != nil {
			t.Fatal(err)
		}
		cc := c.CachedInfo().Config
		if cc.Durable != queue.ConsumerName(r) {
			t.Errorf("%s: not durable: %q", r, cc.Durable)
		}
		if cc.MaxAckPending != 7 {
			t.Errorf("%s: MaxAckPending = %d, want the updated 7", r, cc.MaxAckPending)
		}
		if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.AckWait != 30*time.Second ||
			cc.MaxDeliver != queue.DefaultMaxDeliver || len(cc.BackOff) != 0 || cc.DeliverPolicy != jetstream.DeliverAllPolicy {
			t.Errorf("%s: consumer config %+v", r, cc)
		}
		if len(cc.FilterSubjects) != 0 || cc.FilterSubject != "" {
			t.Errorf("%s: filters %v %q, want none (every subject; the worker skips other receivers' replays)", r, cc.FilterSubjects, cc.FilterSubject)
		}
	}

	dlq, err := env.js.Stream(ctxT(t), queue.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	dc := dlq.CachedInfo().Config
	if dc.Retention != jetstream.LimitsPolicy || dc.MaxAge != 0 || dc.MaxMsgs != -1 || dc.MaxBytes != -1 {
		t.Errorf("DLQ config: retention %v maxage %v maxmsgs %d maxbytes %d", dc.Retention, dc.MaxAge, dc.MaxMsgs, dc.MaxBytes)
	}
}

func TestRemovedReceiverKeepsConsumerAndIsReported(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "old")
	if err := queue.Provision(ctxT(t), env.js, env.cfg, []string{"govuk"}); err != nil {
		t.Fatal(err)
	}
	orphans, err := queue.Orphans(ctxT(t), env.js, []string{"govuk"})
	if err != nil {
		t.Fatal(err)
	}
	if len(orphans) != 1 || orphans[0].Consumer != "rcv_old" || orphans[0].Receiver != "old" {
		t.Fatalf("orphans = %+v, want one: rcv_old of receiver old", orphans)
	}
	if _, err := env.js.Consumer(ctxT(t), queue.IntentStream, "rcv_old"); err != nil {
		t.Fatalf("provisioning without a receiver deleted its consumer: %v", err)
	}
	if err := queue.DeleteReceiver(ctxT(t), env.js, "old"); err != nil {
		t.Fatal(err)
	}
	orphans, err = queue.Orphans(ctxT(t), env.js, []string{"govuk"})
	if err != nil || len(orphans) != 0 {
		t.Fatalf("after DeleteReceiver: orphans %v, err %v", orphans, err)
	}
}

func TestIntentPublishedBeforeAnyWorkerReachesEveryReceiver(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	pub := queue.NewPublisher(env.js, optsNone)
	for _, id := range ids("early", 3) {
		if _, err := pub.Publish(ctxT(t), newIntent(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Only now does any "worker" bind.
	for _, r := range []string{"govuk", "acme"} {
		msgs := fetchAll(t, env.js, r, 3, 5*time.Second)
		if len(msgs) != 3 {
			t.Fatalf("%s got %d of 3 intents published before it consumed", r, len(msgs))
		}
		for i, m := range msgs {
			if got, want := m.Headers().Get(jetstream.MsgIDHeader), ids("early", 3)[i]; got != want {
				t.Errorf("%s msg %d id %q, want %q", r, i, got, want)
			}
		}
	}
}

func TestInterestRetentionRemovesOnlyWhenAllReceiversAcked(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk", "acme")
	if _, err := queue.NewPublisher(env.js, optsNone).Publish(ctxT(t), newIntent("i-1")); err != nil {
		t.Fatal(err)
	}
	ackOne := func(r string) {
		msgs := fetchAll(t, env.js, r, 1, 5*time.Second)
		if len(msgs) != 1 {
			t.Fatalf("%s: no message", r)
		}
		if err := msgs[0].DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	ackOne("govuk")
	// Give the server every chance to (wrongly) remove it.
	time.Sleep(200 * time.Millisecond)
	if n := streamMsgs(t, env.js, queue.IntentStream); n != 1 {
		t.Fatalf("after one of two receivers acked, stream holds %d messages, want 1", n)
	}
	ackOne("acme")
	eventually(t, "removal after both acks", func() (bool, string) {
		n := streamMsgs(t, env.js, queue.IntentStream)
		return n == 0, "msgs=" + itoa(n)
	})
}

// TestReplaySubjectReachesOnlyItsReceiver: receiver consumers take every
// subject (the server's fastest path, see ConsumerConfig), so another
// receiver's consumer sees a replay too, on a subject IsReplayFor tells
// apart: the worker skips it there. An ordered receiver's partition
// consumers filter their own replays only.
func TestReplaySubjectReachesOnlyItsReceiver(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"ordered": 8}
	env := startEnv(t, cfg, "govuk", "acme", "ordered")
	if _, err := env.js.Publish(ctxT(t), queue.ReplaySubject("acme"), intentBytes(t, "r-1")); err != nil {
		t.Fatal(err)
	}
	msgs := fetchAll(t, env.js, "acme", 1, 5*time.Second)
	if len(msgs) != 1 || !queue.IsReplayFor(msgs[0].Subject(), "acme") {
		t.Fatalf("acme got %d replays, want 1 for it", len(msgs))
	}
	msgs = fetchAll(t, env.js, "govuk", 1, 2*time.Second)
	if len(msgs) != 1 || queue.IsReplayFor(msgs[0].Subject(), "govuk") {
		t.Fatalf("govuk: %d messages, want acme's replay, told apart by its subject", len(msgs))
	}
	if msgs := fetchAll(t, env.js, "ordered", 1, 300*time.Millisecond); len(msgs) != 0 {
		t.Fatalf("the ordered receiver's consumer got acme's replay")
	}
}

func TestStateSurvivesServerRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxAckPending = 42
	env := startEnv(t, cfg, "govuk", "acme")
	pub := queue.NewPublisher(env.js, optsNone)
	for _, id := range ids("keep", 5) {
		if _, err := pub.Publish(ctxT(t), newIntent(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range fetchAll(t, env.js, "govuk", 2, 5*time.Second) {
		if err := m.DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if err := queue.PublishDeadLetter(ctxT(t), env.js, queue.DeadLetter{Receiver: "acme", Reason: "http_4xx", StreamSeq: 9}); err != nil {
		t.Fatal(err)
	}

	env.nc.Close()
	env.srv.Shutdown()
	env.srv.WaitForShutdown()

	env2 := startEnv(t, cfg) // same StoreDir, no provisioning
	if n := streamMsgs(t, env2.js, queue.IntentStream); n != 5 {
		t.Errorf("intents after restart = %d, want 5 (acme has acked none)", n)
	}
	if n := streamMsgs(t, env2.js, queue.DLQStream); n != 1 {
		t.Errorf("dead letters after restart = %d, want 1", n)
	}
	for r, want := range map[string]uint64{"govuk": 3, "acme": 5} {
		c, err := env2.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName(r))
		if err != nil {
			t.Fatalf("%s consumer lost in restart: %v", r, err)
		}
		info := c.CachedInfo()
		if info.NumPending != want {
			t.Errorf("%s pending after restart = %d, want %d", r, info.NumPending, want)
		}
		if info.Config.MaxAckPending != 42 {
			t.Errorf("%s MaxAckPending after restart = %d", r, info.Config.MaxAckPending)
		}
	}
	// The duplicate window survives too: re-publishing is still deduplicated.
	ack, err := queue.NewPublisher(env2.js, optsNone).Publish(ctxT(t), newIntent(ids("keep", 5)[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate || ack.Sequence != 1 {
		t.Errorf("re-publish after restart: %+v, want duplicate of seq 1", ack)
	}
}
