package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
)

// Per-subject ordering (issue 16). Producers publish every intent on its
// slot's subject, where slot is a hash of the intent's normalised subject
// (intent.SubjectKey) modulo Slots. The slot space is fixed and part of the
// wire contract, so producers need no configuration: a receiver with
// `ordering: subject` groups the slots into its own number of partitions,
// one durable consumer per partition. Each partition consumer pins its
// deliveries to one process at a time (a pinned-client priority group), which
// keeps up to PartitionMaxAckPending of its intents in flight and starts an
// intent only when no earlier one about the same subject can still be
// outstanding (worker/ordered.go). The order is the stream's: the server
// keeps every unsettled intent pending, so a retry, a hand-back or a killed
// owner's intents come back to whichever process owns the partition next,
// which sorts them by stream sequence again.
//
// Slot s is published on "setrelay.intent.<s%256>.<s/256>", and a replay of
// an intent in slot s for a receiver on
// "setrelay.replay.<s%256>.<s/256>.<token>". The slot's group (s%256) comes
// first so that partition p of 256 takes its intents and every replay in
// its slots with the one filter "setrelay.*.<p>.>": the server then finds a
// partition's next message along one branch of its subject tree. A list of
// literal slot subjects, or a second filter for the replays, puts every
// delivery on the server's multi-filter path, which visits every slot
// subject of a message block under the block's lock: with the earlier
// layout ("setrelay.intent.<slot>", eight filters per partition) ordered
// delivery was 3-4x slower (see docs/ARCHITECTURE.md). Other partitions'
// replays, and other receivers', are skipped by the worker (IsReplayFor),
// as the unordered consumer already does; they are rare.

// Slots is the number of slots: partition counts must divide it.
const Slots = 1024

// SlotGroups is the number of slot groups, the first token after
// "setrelay.intent." of a slot's subject: with this many partitions (the
// default) each partition consumer has one filter.
const SlotGroups = 256

// Partition count limits for an ordered receiver. A partition consumer has
// one filter with SlotGroups partitions, SlotGroups/n with fewer (at most
// 32 at the lower bound) and two per slot with more; the upper bound is the
// slot space.
const (
	MinPartitions     = 8
	MaxPartitions     = Slots
	DefaultPartitions = 256
)

// PartitionGroup is the priority group every process pulls partition
// consumers with; the server pins each partition to one of its pullers.
const PartitionGroup = "setrelay"

// PartitionMaxAckPending bounds one partition's intents in flight, and so
// the memory its owner holds: when a subject's head keeps failing, its later
// intents wait in the owner's memory, and once they fill the window the
// whole partition waits for the head to settle (retried until delivered or
// dead-lettered). A partition starts its intents a window at a time, in turn
// with the receiver's other partitions (worker/ordered.go), so the window is
// also how many of its state changes share one write of the server's
// consumer state file: with 256 partitions and 64 workers, `setrelay bench
// --ordering` delivered most with 32 (16 and 64 were slower; noisy).
const PartitionMaxAckPending = 32

// PartitionPinnedTTL is how long a partition stays pinned to a process that
// has stopped pulling it (killed, hung, or cut off): then the server pins it
// to another process. Owners pull at least every second.
const PartitionPinnedTTL = 10 * time.Second

// partitionPrefix names partition consumers: "ord_<token>_<partition>".
// It differs from the receiver consumers' "rcv_" so that no receiver name
// can collide with a partition consumer's.
const partitionPrefix = "ord_"

// SubjectSlot is the slot of an intent about subject.
func SubjectSlot(subject map[string]any) int {
	return keySlot(intent.SubjectKey(subject))
}

// keySlot is the slot of a subject key: FNV-1a (32 bits) of the key, modulo
// Slots. It is written out rather than taken from hash/fnv so that the
// ordered worker, which checks every intent's slot (OnItsSlot), allocates
// nothing for it; TestKeySlotIsFNV1a holds it to hash/fnv.
func keySlot[K string | []byte](key K) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % Slots)
}

// slotOf reads the subject from encoded intent bytes. Bytes that do not
// parse get the slot of an intent without a subject; the worker
// dead-letters them anyway.
func slotOf(data []byte) int {
	var v struct {
		Subject map[string]any `json:"subject"`
	}
	if json.Unmarshal(data, &v) != nil {
		return SubjectSlot(nil)
	}
	return SubjectSlot(v.Subject)
}

// OrderKey is the subject key (intent.SubjectKey) of encoded intent bytes:
// what an ordered receiver keeps in order. Bytes that do not parse share
// the key of an intent without a subject.
func OrderKey(data []byte) string {
	var v struct {
		Subject map[string]any `json:"subject"`
	}
	_ = json.Unmarshal(data, &v)
	return string(intent.SubjectKey(v.Subject))
}

// OnItsSlot reports whether a message on subject, with order key key
// (OrderKey), is where an ordered receiver looks for its subject's
// intents: false only for an intent published on another slot's subject
// (setrelay.intent.<group>.<n>) than its subject's, by a producer that
// computed the slot itself and got it wrong. Such an intent is ordered
// with another partition, so not with its own subject's other intents.
// It allocates nothing: the ordered worker asks for every intent.
func OnItsSlot(subject, key string) bool {
	rest, ok := strings.CutPrefix(subject, IntentSubject+".")
	if !ok {
		return true // a replay (placed by setrelay) or an older layout
	}
	g, n, ok := strings.Cut(rest, ".")
	if !ok {
		return true // the first slot layout, not read by partitions
	}
	slot := keySlot(key)
	gi, err1 := strconv.Atoi(g)
	ni, err2 := strconv.Atoi(n)
	return err1 == nil && err2 == nil && gi == slot%SlotGroups && ni == slot/SlotGroups
}

// slotTokens is the two subject tokens of slot: "<slot%256>.<slot/256>".
func slotTokens(slot int) string {
	return strconv.Itoa(slot%SlotGroups) + "." + strconv.Itoa(slot/SlotGroups)
}

// SlotSubject is the intent subject of slot.
func SlotSubject(slot int) string { return IntentSubject + "." + slotTokens(slot) }

// IntentSubjectFor is the subject an intent about subject is published on.
func IntentSubjectFor(subject map[string]any) string { return SlotSubject(SubjectSlot(subject)) }

// slotReplaySubject is where a replay for receiver of an intent in slot is
// published: an ordered receiver's partition consumer sees it in line with
// newer intents about the same subject.
func slotReplaySubject(receiver string, slot int) string {
	return ReplaySubjectPrefix + slotTokens(slot) + "." + Token(receiver)
}

// legacyFilters are the subjects a receiver's intents and replays can be
// on without a slot in the current layout: the bare "setrelay.intent" of
// producers older than per-subject ordering, the single-token slot of the
// first slotted layout, and replays made by those versions.
func legacyFilters(receiver string) []string {
	return []string{IntentSubject, IntentSubject + ".*", ReplaySubject(receiver), ReplaySubject(receiver) + ".*"}
}

// IsReplayFor reports whether a message subject is a replay addressed to
// receiver: "setrelay.replay.<group>.<n>.<token>", or from older versions
// "setrelay.replay.<token>" and "setrelay.replay.<token>.<slot>".
func IsReplayFor(subject, receiver string) bool {
	rest, ok := strings.CutPrefix(subject, ReplaySubjectPrefix)
	if !ok {
		return false
	}
	tok := Token(receiver)
	t := strings.Split(rest, ".")
	switch len(t) {
	case 1:
		return t[0] == tok
	case 2:
		return t[0] == tok && slotNumber(t[1], Slots)
	case 3:
		return t[2] == tok && slotNumber(t[0], SlotGroups) && slotNumber(t[1], Slots/SlotGroups)
	}
	return false
}

// slotNumber reports whether s is a decimal from 0 to below limit, in
// the form strconv.Itoa writes.
func slotNumber(s string, limit int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 0 && n < limit && strconv.Itoa(n) == s
}

// ValidPartitions checks an ordered receiver's partition count.
func ValidPartitions(n int) error {
	if n < MinPartitions || n > MaxPartitions || Slots%n != 0 {
		return fmt.Errorf("partitions must be a power of two from %d to %d (got %d)", MinPartitions, MaxPartitions, n)
	}
	return nil
}

// PartitionConsumerName is partition p's consumer of an ordered receiver.
func PartitionConsumerName(receiver string, p int) string {
	return partitionPrefix + Token(receiver) + "_" + strconv.Itoa(p)
}

// PartitionConsumerConfig is partition p of n of an ordered receiver: the
// intent and replay subjects of the slots s with s % n == p (partitionFilters), pinned to one
// puller at a time (PartitionGroup, PartitionPinnedTTL), at most
// PartitionMaxAckPending in flight, and the receiver consumer's other
// settings.
func PartitionConsumerConfig(cfg Config, receiver string, p, n int) jetstream.ConsumerConfig {
	cc := ConsumerConfig(cfg, receiver)
	cc.Durable = PartitionConsumerName(receiver, p)
	cc.Description = fmt.Sprintf("setrelay ordered deliveries to receiver %s, partition %d of %d", receiver, p, n)
	cc.MaxAckPending = PartitionMaxAckPending
	cc.PriorityPolicy = jetstream.PriorityPolicyPinned
	cc.PriorityGroups = []string{PartitionGroup}
	cc.PinnedTTL = PartitionPinnedTTL
	cc.FilterSubjects = partitionFilters(p, n)
	cc.Metadata = map[string]string{
		"setrelay_receiver":   receiver,
		"setrelay_partition":  strconv.Itoa(p),
		"setrelay_partitions": strconv.Itoa(n),
	}
	return cc
}

// partitionFilters are the filters of partition p of n: the intents on,
// and every receiver's replays of intents in, the slots s with s%n == p.
// With n <= SlotGroups those are whole slot groups, "setrelay.*.<group>.>"
// (one filter with n == SlotGroups); with more, each slot needs its intent
// subject "setrelay.*.<group>.<n>" and its replays "setrelay.*.<group>.<n>.*".
// "setrelay.*" matches nothing but "setrelay.intent" and "setrelay.replay"
// in the intents stream, and the other receivers' replays are rare.
func partitionFilters(p, n int) []string {
	var f []string
	if n <= SlotGroups {
		for g := p; g < SlotGroups; g += n {
			f = append(f, "setrelay.*."+strconv.Itoa(g)+".>")
		}
		return f
	}
	for s := p; s < Slots; s += n {
		f = append(f, "setrelay.*."+slotTokens(s), "setrelay.*."+slotTokens(s)+".*")
	}
	return f
}

// partitionConsumers lists receiver's existing partition consumers by
// name. A listing that fails returns what it got: the caller then updates
// the rest, which is only slower.
func partitionConsumers(ctx context.Context, stream jetstream.Stream, receiver string) map[string]*jetstream.ConsumerConfig {
	out := map[string]*jetstream.ConsumerConfig{}
	infos, _ := PartitionConsumers(ctx, stream, receiver)
	for _, ci := range infos {
		cfg := ci.Config
		out[ci.Name] = &cfg
	}
	return out
}

// PartitionConsumers lists the partition consumers of an ordered receiver
// that exist on stream, whatever their number. A name counts only as
// "ord_<token>_<digits>", so the partitions of receiver "a" never include
// those of a receiver "a_b".
func PartitionConsumers(ctx context.Context, stream jetstream.Stream, receiver string) ([]*jetstream.ConsumerInfo, error) {
	var out []*jetstream.ConsumerInfo
	prefix := partitionPrefix + Token(receiver) + "_"
	infos := stream.ListConsumers(ctx)
	for ci := range infos.Info() {
		if rest, ok := strings.CutPrefix(ci.Name, prefix); ok && rest != "" && strings.Trim(rest, "0123456789") == "" {
			out = append(out, ci)
		}
	}
	if err := infos.Err(); err != nil {
		return out, fmt.Errorf("queue: list partition consumers of %q: %w", receiver, err)
	}
	return out, nil
}

// samePartition reports whether an existing partition consumer already
// has the settings Provision would give it.
func samePartition(have *jetstream.ConsumerConfig, want jetstream.ConsumerConfig) bool {
	if have == nil {
		return false
	}
	// A consumer that follows its stream's replicas may report 0.
	replicas := have.Replicas == want.Replicas || (have.Replicas == 0 && want.Replicas <= 1)
	return replicas && have.MaxAckPending == want.MaxAckPending && have.AckWait == want.AckWait &&
		have.MaxDeliver == want.MaxDeliver && slices.Equal(have.FilterSubjects, want.FilterSubjects) &&
		have.PriorityPolicy == want.PriorityPolicy && have.PinnedTTL == want.PinnedTTL &&
		slices.Equal(have.PriorityGroups, want.PriorityGroups)
}

// LogicalSubject is subject without its slot: "setrelay.intent.<group>.<n>"
// and the older "setrelay.intent.<slot>" are "setrelay.intent",
// "setrelay.replay.<group>.<n>.<token>" and "setrelay.replay.<token>.<slot>"
// are "setrelay.replay.<token>". Span names and metric labels use it, so
// that the 1024 slots do not multiply them.
func LogicalSubject(subject string) string {
	if rest, ok := strings.CutPrefix(subject, IntentSubject+"."); ok {
		t := strings.Split(rest, ".")
		switch {
		case len(t) == 1 && slotNumber(t[0], Slots),
			len(t) == 2 && slotNumber(t[0], SlotGroups) && slotNumber(t[1], Slots/SlotGroups):
			return IntentSubject
		}
		return subject
	}
	if rest, ok := strings.CutPrefix(subject, ReplaySubjectPrefix); ok {
		t := strings.Split(rest, ".")
		switch {
		case len(t) == 2 && slotNumber(t[1], Slots):
			return ReplaySubjectPrefix + t[0]
		case len(t) == 3 && slotNumber(t[0], SlotGroups) && slotNumber(t[1], Slots/SlotGroups):
			return ReplaySubjectPrefix + t[2]
		}
	}
	return subject
}

// Upgrading from the first slot layout ("setrelay.intent.<slot>", and
// replays on "setrelay.replay.<token>.<slot>"): Provision changes each
// partition consumer's filters to the current layout, and the receiver
// consumer takes the old subjects from then on (legacyFilters). But a
// partition consumer may still hold intents on its old subjects, delivered
// and not yet acknowledged or not yet delivered, and with interest
// retention the server deletes, when a filter changes, every message that
// no consumer needs any more: the receiver consumer has already passed
// them. So a partition consumer keeps each old subject on which the stream
// still holds messages, next to its new filter, until a later Provision
// (the next start) finds that subject empty. Meanwhile that partition is
// on the server's slower multi-filter path, and an intent an old producer
// publishes on such a subject reaches the receiver twice (the same jti),
// through both consumers.

// heldSubjects are the subjects of the first slot layout on which the
// intents stream holds messages for a receiver.
type heldSubjects struct {
	counts map[string]uint64
	// unknown is set when the stream could not tell: then every old
	// subject is kept.
	unknown bool
}

// legacyHeld asks the stream which old-layout subjects of receiver hold
// messages.
func legacyHeld(ctx context.Context, stream jetstream.Stream, receiver string) *heldSubjects {
	h := &heldSubjects{counts: map[string]uint64{}}
	for _, f := range []string{IntentSubject + ".*", ReplaySubject(receiver) + ".*"} {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(f))
		if err != nil {
			h.unknown = true
			return h
		}
		for subj, n := range info.State.Subjects {
			h.counts[subj] += n
		}
	}
	return h
}

// keep returns the filters in have, a partition consumer's current ones,
// that are old-layout subjects still holding messages and that no filter
// in want already covers (the server refuses overlapping filters).
func (h *heldSubjects) keep(have, want []string) []string {
	var out []string
	for _, f := range have {
		if !isLegacySlotSubject(f) || (!h.unknown && h.counts[f] == 0) {
			continue
		}
		if slices.ContainsFunc(want, func(w string) bool { return server.SubjectMatchesFilter(f, w) }) {
			continue
		}
		out = append(out, f)
	}
	return out
}

// isLegacySlotSubject reports whether subject is a slot subject of the
// first layout: "setrelay.intent.<slot>" or "setrelay.replay.<token>.<slot>".
func isLegacySlotSubject(subject string) bool {
	if rest, ok := strings.CutPrefix(subject, IntentSubject+"."); ok {
		return slotNumber(rest, Slots)
	}
	rest, ok := strings.CutPrefix(subject, ReplaySubjectPrefix)
	t := strings.Split(rest, ".")
	return ok && len(t) == 2 && t[0] != "" && slotNumber(t[1], Slots)
}

// Partitions beyond a receiver's current count (after `partitions` was
// lowered, or `ordering` turned off) are pulled by no process, yet each
// still matches every new intent in its slots: with interest retention it
// would keep all of them in the stream for good, growing it until
// producers get ErrStreamFull. Provision deletes such a partition once it
// holds nothing that the receiver's current consumers will not deliver
// themselves, and leaves the others for an operator (StalePartitions,
// `provision --prune`), since deleting one drops the intents only it holds.
//
// What the current consumers will deliver: every message after the
// furthest of their positions when the change was made (they each start
// from there or earlier). That position is recorded on the surplus
// partition (metadata retiredAfterKey) the first time Provision finds it,
// since later their positions move on and no longer tell what they had
// passed at the change.

// retiredAfterKey is the metadata key of a surplus partition consumer
// holding that position.
const retiredAfterKey = "setrelay_retired_after"

// partitionIndex is the partition number in a partition consumer's name.
func partitionIndex(name, receiver string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, partitionPrefix+Token(receiver)+"_"))
	if err != nil {
		return -1
	}
	return n
}

// retirePartitions deletes receiver's partition consumers numbered n or
// above that hold nothing only they would deliver, and records the
// position for those it keeps. A failure to tell leaves the consumer in
// place: it is only kept longer.
func retirePartitions(ctx context.Context, stream jetstream.Stream, receiver string, n int) error {
	parts, err := PartitionConsumers(ctx, stream, receiver)
	if err != nil {
		return err
	}
	furthest, known := uint64(0), false
	var surplus []*jetstream.ConsumerInfo
	for _, ci := range parts {
		if partitionIndex(ci.Name, receiver) >= n {
			surplus = append(surplus, ci)
		} else {
			furthest = max(furthest, ci.Delivered.Stream)
		}
	}
	if len(surplus) == 0 {
		return nil
	}
	rc, err := stream.Consumer(ctx, ConsumerName(receiver))
	if err == nil {
		furthest, known = max(furthest, rc.CachedInfo().Delivered.Stream), true
	}
	for _, ci := range surplus {
		after, err := strconv.ParseUint(ci.Config.Metadata[retiredAfterKey], 10, 64)
		if err != nil {
			if !known {
				continue
			}
			cc := ci.Config
			cc.Metadata = maps.Clone(cc.Metadata)
			if cc.Metadata == nil {
				cc.Metadata = map[string]string{}
			}
			cc.Metadata[retiredAfterKey] = strconv.FormatUint(furthest, 10)
			if err := createOrUpdateConsumer(ctx, stream, cc); err != nil {
				return fmt.Errorf("queue: mark surplus partition consumer %s: %w", ci.Name, err)
			}
			after = furthest
		}
		if holdsUpTo(ctx, stream, ci, after) {
			continue
		}
		if err := stream.DeleteConsumer(ctx, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("queue: delete surplus partition consumer %s: %w", ci.Name, err)
		}
	}
	return nil
}

// holdsUpTo reports whether consumer ci may still hold a message at or
// before stream sequence seq that it has not settled: one delivered and
// not acknowledged, or one after its position that its filters match.
// When the stream cannot tell, it says yes.
func holdsUpTo(ctx context.Context, stream jetstream.Stream, ci *jetstream.ConsumerInfo, seq uint64) bool {
	if ci.NumAckPending > 0 && ci.AckFloor.Stream < seq {
		return true
	}
	from := ci.Delivered.Stream + 1
	if from > seq {
		return false
	}
	filters := ci.Config.FilterSubjects
	if ci.Config.FilterSubject != "" {
		filters = append(filters, ci.Config.FilterSubject)
	}
	if len(filters) == 0 {
		filters = []string{">"}
	}
	for _, f := range filters {
		m, err := stream.GetMsg(ctx, from, jetstream.WithGetMsgSubject(f))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil, m.Sequence <= seq:
			return true
		}
	}
	return false
}

// StalePartitions lists the partition consumers of configured receivers
// beyond their current partition count (ordered; none for a receiver
// without ordering) that Provision kept because they still hold intents
// only they would deliver. Nobody pulls them: start-up warns about them,
// and `setrelay provision --prune` deletes them (DeleteOrphan), dropping
// those intents, once an operator has decided (or replayed them: set the
// receiver's ordering back, let them drain, and change it again).
func StalePartitions(ctx context.Context, js jetstream.JetStream, receivers []string, ordered map[string]int) ([]Orphan, error) {
	stream, err := js.Stream(ctx, IntentStream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", IntentStream, err)
	}
	var out []Orphan
	for _, r := range receivers {
		parts, err := PartitionConsumers(ctx, stream, r)
		if err != nil {
			return nil, err
		}
		for _, ci := range parts {
			if partitionIndex(ci.Name, r) < ordered[r] {
				continue
			}
			out = append(out, Orphan{Consumer: ci.Name, Receiver: r, Pending: ci.NumPending + uint64(max(ci.NumAckPending, 0))})
		}
	}
	slices.SortFunc(out, func(a, b Orphan) int { return strings.Compare(a.Consumer, b.Consumer) })
	return out, nil
}
