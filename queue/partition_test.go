package queue_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

func TestSubjectSlotFollowsTheNormalisedSubject(t *testing.T) {
	user := map[string]any{"format": "opaque", "id": "u1"}
	tenant := map[string]any{"format": "opaque", "id": "t1"}
	complexWith := map[string]any{"format": "complex", "user": user, "tenant": tenant}
	complexWithout := map[string]any{"user": user, "tenant": tenant}
	if a, b := queue.SubjectSlot(complexWith), queue.SubjectSlot(complexWithout); a != b {
		t.Errorf("complex subject with and without format: slots %d and %d, want one", a, b)
	}
	if a, b := string(intent.SubjectKey(complexWith)), string(intent.SubjectKey(complexWithout)); a != b {
		t.Errorf("subject keys differ: %s and %s", a, b)
	}
	// Every member counts: a user alone is another subject.
	if a, b := string(intent.SubjectKey(complexWith)), string(intent.SubjectKey(map[string]any{"format": "complex", "user": user})); a == b {
		t.Errorf("{user, tenant} and {user} share the key %s", a)
	}
	slots := map[int]bool{}
	for i := range 2000 {
		s := queue.SubjectSlot(map[string]any{"format": "email", "email": fmt.Sprintf("u%d@example.com", i)})
		if s < 0 || s >= queue.Slots {
			t.Fatalf("slot %d out of range", s)
		}
		slots[s] = true
	}
	// 2000 subjects over 1024 slots: a fair hash fills most of them.
	if len(slots) < 700 {
		t.Errorf("2000 subjects used only %d of %d slots", len(slots), queue.Slots)
	}
	if got := queue.IntentSubjectFor(nil); !strings.HasPrefix(got, queue.IntentSubject+".") {
		t.Errorf("subject of an intent without subject: %q", got)
	}
}

// matches reports whether a NATS filter matches a literal subject: the
// server's own rule.
func matches(filter, subject string) bool { return server.SubjectMatchesFilter(subject, filter) }

// TestPartitionConsumersCoverEverySlotOnce: slot s's intents, and replays
// of them for any receiver, reach exactly partition s%n of an ordered
// receiver, with one filter per partition at the default count; older
// layouts' subjects reach the receiver consumer instead.
func TestPartitionConsumersCoverEverySlotOnce(t *testing.T) {
	for _, n := range []int{8, 64, 256, 512, 1024} {
		filters := make([][]string, n)
		for p := range n {
			cc := queue.PartitionConsumerConfig(queue.Config{}, "rcv.a", p, n)
			if cc.MaxAckPending != queue.PartitionMaxAckPending || cc.PriorityPolicy != jetstream.PriorityPolicyPinned ||
				len(cc.PriorityGroups) != 1 || cc.PriorityGroups[0] != queue.PartitionGroup || cc.PinnedTTL != queue.PartitionPinnedTTL {
				t.Fatalf("partition %d/%d: MaxAckPending %d, priority %v %v ttl %v; want %d, pinned to group %q for %v", p, n,
					cc.MaxAckPending, cc.PriorityPolicy, cc.PriorityGroups, cc.PinnedTTL,
					queue.PartitionMaxAckPending, queue.PartitionGroup, queue.PartitionPinnedTTL)
			}
			if n == queue.SlotGroups && len(cc.FilterSubjects) != 1 {
				t.Errorf("partition %d of %d has filters %v, want one", p, n, cc.FilterSubjects)
			}
			filters[p] = cc.FilterSubjects
		}
		owners := func(subject string) []int {
			var out []int
			for p, fs := range filters {
				for _, f := range fs {
					if matches(f, subject) {
						out = append(out, p)
					}
				}
			}
			return out
		}
		for s := range queue.Slots {
			intentSubj := queue.SlotSubject(s)
			if want := fmt.Sprintf("setrelay.intent.%d.%d", s%256, s/256); intentSubj != want {
				t.Fatalf("SlotSubject(%d) = %q, want %q", s, intentSubj, want)
			}
			for _, subj := range []string{intentSubj, fmt.Sprintf("setrelay.replay.%d.%d.rcv_a", s%256, s/256), fmt.Sprintf("setrelay.replay.%d.%d.other", s%256, s/256)} {
				if got := owners(subj); len(got) != 1 || got[0] != s%n {
					t.Fatalf("%d partitions: %s is taken by partitions %v, want [%d]", n, subj, got, s%n)
				}
			}
			// The first slot layout is the receiver consumer's.
			if got := owners(fmt.Sprintf("setrelay.intent.%d", s)); len(got) != 0 {
				t.Fatalf("%d partitions: old-layout slot %d is taken by partitions %v", n, s, got)
			}
		}
	}
	legacy := queue.ConsumerConfig(queue.Config{Ordered: map[string]int{"rcv.a": 256}}, "rcv.a").FilterSubjects
	for _, subj := range []string{"setrelay.intent", "setrelay.intent.725", "setrelay.replay.rcv_a", "setrelay.replay.rcv_a.17"} {
		if !slices.ContainsFunc(legacy, func(f string) bool { return matches(f, subj) }) {
			t.Errorf("the ordered receiver's own consumer (filters %v) does not take %s", legacy, subj)
		}
	}
	for _, subj := range []string{queue.SlotSubject(725), "setrelay.replay.213.2.rcv_a", "setrelay.replay.other"} {
		if slices.ContainsFunc(legacy, func(f string) bool { return matches(f, subj) }) {
			t.Errorf("the ordered receiver's own consumer (filters %v) takes %s", legacy, subj)
		}
	}
	for _, n := range []int{0, 4, 12, 2048} {
		if queue.ValidPartitions(n) == nil {
			t.Errorf("ValidPartitions(%d) accepted", n)
		}
	}
}

func TestLogicalSubject(t *testing.T) {
	for in, want := range map[string]string{
		"setrelay.intent":         "setrelay.intent",
		"setrelay.intent.725":     "setrelay.intent",
		"setrelay.intent.213.2":   "setrelay.intent",
		"setrelay.intent.213.4":   "setrelay.intent.213.4",
		"setrelay.intent.256.0":   "setrelay.intent.256.0",
		"setrelay.replay.213.2.a": "setrelay.replay.a",
		"setrelay.replay.a":       "setrelay.replay.a",
		"setrelay.replay.a.17":    "setrelay.replay.a",
		"setrelay.replay.a.1024":  "setrelay.replay.a.1024",
		"setrelay.dlq.a":          "setrelay.dlq.a",
		"setrelay.intent.x":       "setrelay.intent.x",
	} {
		if got := queue.LogicalSubject(in); got != want {
			t.Errorf("LogicalSubject(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsReplayFor(t *testing.T) {
	for subj, want := range map[string]bool{
		"setrelay.replay.a":       true,
		"setrelay.replay.a.17":    true,
		"setrelay.replay.a.1024":  false,
		"setrelay.replay.ab":      false,
		"setrelay.replay.a.x":     false,
		"setrelay.replay.b.1":     false,
		"setrelay.replay.213.2.a": true,
		"setrelay.replay.213.2.b": false,
		"setrelay.replay.213.4.a": false,
		"setrelay.replay.a.2.a":   false,
		"setrelay.replay.213.2":   false,
	} {
		if got := queue.IsReplayFor(subj, "a"); got != want {
			t.Errorf("IsReplayFor(%q, a) = %v, want %v", subj, got, want)
		}
	}
}

// TestBatchPublisherKeepsOrderPerSubject: backfill's publisher keeps a
// window of publishes in flight, and an ordered receiver's partition
// consumers still see each subject's intents in submission (file) order;
// the unordered consumer sees every one of them too.
func TestBatchPublisherKeepsOrderPerSubject(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"ordered": 8}
	env := startEnv(t, cfg, "ordered", "plain")
	const subjects, per = 12, 25
	b, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: 64})
	if err != nil {
		t.Fatal(err)
	}
	for k := range per {
		for s := range subjects {
			in := &intent.Intent{ID: fmt.Sprintf("b-%d-%d", s, k), Type: "caep.session-revoked", Txn: fmt.Sprintf("%d-%d", s, k),
				Subject: map[string]any{"format": "email", "email": fmt.Sprintf("u%d@example.com", s)}}
			data, err := queue.Encode(in, optsNone)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Add(ctxT(t), in.ID, data, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Close(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	next := map[int]int{}
	total := 0
	for p := range 8 {
		cons, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.PartitionConsumerName("ordered", p))
		if err != nil {
			t.Fatal(err)
		}
		for {
			ctx, cancel := context.WithTimeout(ctxT(t), 500*time.Millisecond)
			msg, err := cons.Next(jetstream.FetchContext(ctx), jetstream.FetchPriorityGroup(queue.PartitionGroup))
			cancel()
			if err != nil {
				break
			}
			var in struct{ Txn string }
			_ = json.Unmarshal(msg.Data(), &in)
			var s, k int
			fmt.Sscanf(in.Txn, "%d-%d", &s, &k)
			if k != next[s] {
				t.Errorf("partition %d: subject %d intent %d, want %d", p, s, k, next[s])
			}
			next[s] = k + 1
			total++
			_ = msg.Ack()
		}
	}
	if total != subjects*per {
		t.Errorf("partition consumers delivered %d intents, want %d", total, subjects*per)
	}
	info, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName("plain"))
	if err != nil {
		t.Fatal(err)
	}
	if ci := info.CachedInfo(); ci.NumPending != subjects*per {
		t.Errorf("unordered consumer has %d pending, want %d", ci.NumPending, subjects*per)
	}
}

// TestProvisionLeavesUnchangedPartitionsAlone: every process provisions at
// start-up; the second time, the partition consumers are listed, not each
// updated (counted in JetStream API requests), and a changed setting is
// still applied.
func TestProvisionLeavesUnchangedPartitionsAlone(t *testing.T) {
	const n = 64
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"ordered": n}
	env := startEnv(t, cfg, "ordered")
	apiCalls := func() uint64 {
		t.Helper()
		ai, err := env.js.AccountInfo(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		return ai.API.Total
	}
	before := apiCalls()
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"ordered"}); err != nil {
		t.Fatal(err)
	}
	if calls := apiCalls() - before; calls >= n {
		t.Errorf("an idempotent provision made %d JetStream API requests for %d partitions", calls, n)
	}
	cfg.AckWait = 7 * time.Second
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"ordered"}); err != nil {
		t.Fatal(err)
	}
	changed, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.PartitionConsumerName("ordered", n-1))
	if err != nil {
		t.Fatal(err)
	}
	if got := changed.CachedInfo().Config.AckWait; got != 7*time.Second {
		t.Errorf("AckWait after provisioning 7s: %v", got)
	}
}

// TestProvisionHandsOldLayoutPartitionsOver upgrades an ordered receiver
// from the first slot layout (literal "setrelay.intent.<slot>" filters)
// while its partitions hold intents, one delivered and not acknowledged:
// nothing is lost, each partition keeps only the old subjects that still
// hold messages, an old producer's intent published afterwards reaches the
// receiver's own consumer, and once the old subjects are empty the next
// Provision leaves each partition its single-branch filters.
func TestProvisionHandsOldLayoutPartitionsOver(t *testing.T) {
	const n = 8
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"ord": n}
	cfg.AckWait = time.Second
	env := startEnv(t, cfg)

	// The previous version's stream and consumers.
	sc := queue.IntentStreamConfig(cfg)
	sc.Subjects = []string{"setrelay.intent", "setrelay.intent.*", "setrelay.replay.>"}
	stream, err := env.js.CreateStream(ctxT(t), sc)
	if err != nil {
		t.Fatal(err)
	}
	rc := queue.ConsumerConfig(cfg, "ord")
	rc.FilterSubjects = []string{"setrelay.intent", "setrelay.replay.ord"}
	if _, err := stream.CreateConsumer(ctxT(t), rc); err != nil {
		t.Fatal(err)
	}
	oldFilters := func(p int) []string {
		var f []string
		for s := p; s < queue.Slots; s += n {
			f = append(f, fmt.Sprintf("setrelay.intent.%d", s))
		}
		for s := p; s < queue.Slots; s += n {
			f = append(f, fmt.Sprintf("setrelay.replay.ord.%d", s))
		}
		return f
	}
	for p := range n {
		cc := queue.PartitionConsumerConfig(cfg, "ord", p, n)
		cc.FilterSubjects = oldFilters(p)
		if _, err := stream.CreateConsumer(ctxT(t), cc); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(subject, id string) {
		t.Helper()
		if _, err := env.js.Publish(ctxT(t), subject, intentBytes(t, id)); err != nil {
			t.Fatal(err)
		}
	}
	// One handle per consumer: a handle keeps the pin the server gave it.
	handles := map[string]jetstream.Consumer{}
	next := func(consumer string) jetstream.Msg {
		t.Helper()
		c, ok := handles[consumer]
		if !ok {
			var err error
			if c, err = env.js.Consumer(ctxT(t), queue.IntentStream, consumer); err != nil {
				t.Fatal(err)
			}
			handles[consumer] = c
		}
		var opts []jetstream.FetchOpt
		if consumer != queue.ConsumerName("ord") {
			opts = append(opts, jetstream.FetchPriorityGroup(queue.PartitionGroup))
		}
		msg, err := c.Next(append(opts, jetstream.FetchMaxWait(5*time.Second))...)
		if err != nil {
			t.Fatalf("next from %s: %v", consumer, err)
		}
		return msg
	}
	partFilters := func(p int) []string {
		t.Helper()
		c, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.PartitionConsumerName("ord", p))
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config.FilterSubjects
	}
	publish("setrelay.intent.1", "old-1")
	publish("setrelay.intent.9", "old-9")
	publish("setrelay.intent.3", "old-3")
	inFlight := next(queue.PartitionConsumerName("ord", 1))
	// The running relays pull the receiver's own consumer, which moves it
	// past the old-layout intents it did not take then.
	rcv, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName("ord"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := rcv.FetchNoWait(1); err != nil {
		t.Fatal(err)
	} else {
		for range b.Messages() {
			t.Fatal("the receiver consumer took an old-layout intent before the upgrade")
		}
	}

	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"ord"}); err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctxT(t)); err != nil || info.State.Msgs != 3 {
		t.Fatalf("after the upgrade the stream holds %+v (%v), want the 3 old-layout intents", info, err)
	}
	for p, held := range map[int][]string{0: nil, 1: {"setrelay.intent.1", "setrelay.intent.9"}, 3: {"setrelay.intent.3"}} {
		want := append(queue.PartitionConsumerConfig(cfg, "ord", p, n).FilterSubjects, held...)
		if got := partFilters(p); !slices.Equal(got, want) {
			t.Errorf("partition %d after the upgrade filters %v, want %v", p, got, want)
		}
	}
	// Nothing was lost: the undelivered intents are still delivered, the
	// one in flight is redelivered when its AckWait runs out.
	got := map[string]bool{}
	for _, c := range []int{1, 1, 3} {
		msg := next(queue.PartitionConsumerName("ord", c))
		var in struct{ ID string }
		_ = json.Unmarshal(msg.Data(), &in)
		got[in.ID] = true
		if err := msg.DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if !got["old-1"] || !got["old-9"] || !got["old-3"] {
		t.Fatalf("after the upgrade the partitions delivered %v, want old-1, old-9 and old-3", got)
	}
	_ = inFlight.Ack() // the first owner's late outcome: harmless

	// A producer not yet upgraded: its intent reaches the receiver's own
	// consumer (partition 5 took no old subject). That consumer may also
	// deliver the old intents the partitions held, again (the same jti):
	// it had not passed them when it started taking their subjects.
	publish("setrelay.intent.5", "old-5-later")
	for {
		msg := next(queue.ConsumerName("ord"))
		if err := msg.DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if msg.Subject() == "setrelay.intent.5" {
			break
		}
		if !slices.Contains([]string{"setrelay.intent.1", "setrelay.intent.9", "setrelay.intent.3"}, msg.Subject()) {
			t.Fatalf("the receiver consumer delivered %s", msg.Subject())
		}
	}

	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"ord"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{1, 3} {
		if got, want := partFilters(p), queue.PartitionConsumerConfig(cfg, "ord", p, n).FilterSubjects; !slices.Equal(got, want) {
			t.Errorf("partition %d once its old subjects are empty filters %v, want %v", p, got, want)
		}
	}
	info, err := stream.Info(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("the stream still holds %d messages", info.State.Msgs)
	}
}

// TestProvisionTurningOrderingOnKeepsTheBacklog turns `ordering: subject`
// on for a receiver that already has a backlog, the only receiver: its
// consumer's filter narrows to the older subjects, and with interest
// retention the server deletes, at that moment, every message no consumer
// matches. The partition consumers must exist by then, so the backlog
// moves to them instead of being deleted.
func TestProvisionTurningOrderingOnKeepsTheBacklog(t *testing.T) {
	const n = 8
	cfg := testConfig(t)
	env := startEnv(t, cfg, "late")
	pub := queue.NewPublisher(env.js, intent.Options{})
	const backlog = 20
	for i := range backlog {
		in := newIntent(fmt.Sprintf("b-%d", i))
		in.Subject = map[string]any{"format": "email", "email": fmt.Sprintf("u%d@example.com", i)}
		if _, err := pub.Publish(ctxT(t), in); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Ordered = map[string]int{"late": n}
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"late"}); err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, env.js, queue.IntentStream); got != backlog {
		t.Fatalf("after turning ordering on the stream holds %d intents, want the backlog of %d", got, backlog)
	}
	stream, err := env.js.Stream(ctxT(t), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	parts, err := queue.PartitionConsumers(ctxT(t), stream, "late")
	if err != nil || len(parts) != n {
		t.Fatalf("partition consumers: %d, %v", len(parts), err)
	}
	var pending uint64
	for _, ci := range parts {
		pending += ci.NumPending
	}
	if pending != backlog {
		t.Errorf("the partitions hold %d intents, want %d", pending, backlog)
	}

	// More partitions: each old partition lets go of half its slot groups,
	// which new partitions take.
	cfg.Ordered = map[string]int{"late": 2 * n}
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"late"}); err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, env.js, queue.IntentStream); got != backlog {
		t.Fatalf("after doubling the partitions the stream holds %d intents, want the backlog of %d", got, backlog)
	}
	if parts, err = queue.PartitionConsumers(ctxT(t), stream, "late"); err != nil || len(parts) != 2*n {
		t.Fatalf("partition consumers: %d, %v", len(parts), err)
	}
	pending = 0
	for _, ci := range parts {
		pending += ci.NumPending
	}
	if pending != backlog {
		t.Errorf("the %d partitions hold %d intents, want %d", 2*n, pending, backlog)
	}
}

// TestProvisionRetiresSurplusPartitions lowers an ordered receiver's
// partitions and then turns ordering off. A partition consumer nobody
// pulls any more still matches every new intent in its slots, and with
// interest retention would keep each one in the stream for good, growing
// it until producers get ErrStreamFull. Provision deletes it once it holds
// nothing the receiver's current consumers will not deliver, and keeps
// (and reports) one that still holds intents only it would deliver.
func TestProvisionRetiresSurplusPartitions(t *testing.T) {
	const n = 16
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"r": n}
	env := startEnv(t, cfg, "r")
	stream, err := env.js.Stream(ctxT(t), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	pub := queue.NewPublisher(env.js, intent.Options{})
	publish := func(prefix string, count int) {
		t.Helper()
		for i := range count {
			in := newIntent(fmt.Sprintf("%s-%d", prefix, i))
			in.Subject = map[string]any{"format": "email", "email": fmt.Sprintf("%s%d@example.com", prefix, i)}
			if _, err := pub.Publish(ctxT(t), in); err != nil {
				t.Fatal(err)
			}
		}
	}
	partitions := func() map[string]*jetstream.ConsumerInfo {
		t.Helper()
		parts, err := queue.PartitionConsumers(ctxT(t), stream, "r")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*jetstream.ConsumerInfo{}
		for _, ci := range parts {
			out[ci.Name] = ci
		}
		return out
	}
	publish("a", 40)

	// Fewer partitions, nothing pulled yet: partition p < 8 now also takes
	// the slot groups of p+8 from their start, so partitions 8..15 hold
	// nothing only they would deliver and go.
	cfg.Ordered = map[string]int{"r": n / 2}
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"r"}); err != nil {
		t.Fatal(err)
	}
	if got := len(partitions()); got != n/2 {
		t.Fatalf("after lowering to %d partitions there are %d partition consumers", n/2, got)
	}
	if got := streamMsgs(t, env.js, queue.IntentStream); got != 40 {
		t.Fatalf("stream holds %d intents, want 40", got)
	}
	stale, err := queue.StalePartitions(ctxT(t), env.js, []string{"r"}, cfg.Ordered)
	if err != nil || len(stale) != 0 {
		t.Fatalf("StalePartitions = %+v, %v; want none", stale, err)
	}

	// Partition 0 delivers and settles everything it holds, then ordering
	// goes off. The receiver consumer has, meanwhile, been pulled past the
	// backlog (it filters the older subjects, so it took none of it): the
	// other partitions' intents are theirs alone and they must stay.
	c0, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.PartitionConsumerName("r", 0))
	if err != nil {
		t.Fatal(err)
	}
	held0 := partitions()[queue.PartitionConsumerName("r", 0)].NumPending
	for range held0 {
		msg, err := c0.Next(jetstream.FetchPriorityGroup(queue.PartitionGroup), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := msg.DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := env.js.Consumer(ctxT(t), queue.IntentStream, queue.ConsumerName("r"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.js.Publish(ctxT(t), queue.IntentSubject, intentBytes(t, "old-producer")); err != nil {
		t.Fatal(err)
	}
	if msg, err := rc.Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatal(err)
	} else if msg.Subject() != queue.IntentSubject {
		t.Fatalf("the receiver consumer of an ordered receiver delivered %s", msg.Subject())
	} else if err := msg.DoubleAck(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	cfg.Ordered = nil
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"r"}); err != nil {
		t.Fatal(err)
	}
	left := partitions()
	if _, ok := left[queue.PartitionConsumerName("r", 0)]; ok || held0 == 0 {
		t.Errorf("partition 0 (delivered %d, all settled) was kept", held0)
	}
	var kept uint64
	for _, ci := range left {
		kept += ci.NumPending
	}
	if kept != 40-held0 {
		t.Errorf("the kept partitions hold %d intents, want the %d only they would deliver", kept, 40-held0)
	}
	stale, err = queue.StalePartitions(ctxT(t), env.js, []string{"r"}, cfg.Ordered)
	if err != nil || len(stale) != len(left) {
		t.Fatalf("StalePartitions = %+v, %v; want the %d kept partitions", stale, err, len(left))
	}
	// Intents published from now on reach the receiver consumer; once the
	// kept partitions are deleted (provision --prune), nothing holds them
	// after the receiver consumer settles them.
	publish("b", 5)
	for _, o := range stale {
		if err := queue.DeleteOrphan(ctxT(t), env.js, o.Consumer); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		msg, err := rc.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := msg.DoubleAck(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the stream empties", func() (bool, string) {
		n := streamMsgs(t, env.js, queue.IntentStream)
		return n == 0, fmt.Sprintf("%d messages", n)
	})
}

// TestProvisionRemovingAFilterKeepsNewIntents turns ordering off for the
// only receiver: its consumer goes from the older subjects' filters to
// every subject. nats-server (2.15.2, consumer.updateConfig) registers a
// consumer's subjects for the stream's interest check only when it has
// filters, so a consumer updated to none is registered on nothing: with
// interest retention a new intent that no other consumer matches is then
// not stored at all, until the server restarts. Provision must not leave
// the consumer so.
func TestProvisionRemovingAFilterKeepsNewIntents(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"r": 8}
	env := startEnv(t, cfg, "r")
	cfg.Ordered = nil
	if err := queue.Provision(ctxT(t), env.js, cfg, []string{"r"}); err != nil {
		t.Fatal(err)
	}
	stream, err := env.js.Stream(ctxT(t), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	if parts, err := queue.PartitionConsumers(ctxT(t), stream, "r"); err != nil || len(parts) != 0 {
		t.Fatalf("%d empty surplus partitions kept (%v)", len(parts), err)
	}
	pub := queue.NewPublisher(env.js, intent.Options{})
	for i := range 5 {
		in := newIntent(fmt.Sprintf("n-%d", i))
		in.Subject = map[string]any{"format": "email", "email": fmt.Sprintf("n%d@example.com", i)}
		if _, err := pub.Publish(ctxT(t), in); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.js.Publish(ctxT(t), queue.IntentSubject, intentBytes(t, "bare")); err != nil {
		t.Fatal(err)
	}
	if got := streamMsgs(t, env.js, queue.IntentStream); got != 6 {
		t.Fatalf("the stream stored %d of 6 intents published after ordering was turned off", got)
	}
	if got := len(fetchAll(t, env.js, "r", 6, 5*time.Second)); got != 6 {
		t.Errorf("the receiver consumer delivered %d of 6", got)
	}
}
