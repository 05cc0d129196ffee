package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
)

// Per-subject ordering (issue 16). Producers publish every intent on
// "setrelay.intent.<slot>", where slot is a hash of the intent's normalised
// subject (intent.SubjectKey) modulo Slots. The slot space is fixed and part
// of the wire contract, so producers need no configuration: a receiver with
// `ordering: subject` groups the slots into its own number of partitions,
// one durable consumer per partition. Each partition consumer pins its
// deliveries to one process at a time (a pinned-client priority group), which
// keeps up to PartitionMaxAckPending of its intents in flight and starts an
// intent only when no earlier one about the same subject can still be
// outstanding (worker/ordered.go). The order is the stream's: the server
// keeps every unsettled intent pending, so a retry, a hand-back or a killed
// owner's intents come back to whichever process owns the partition next,
// which sorts them by stream sequence again.

// Slots is the number of intent subjects "setrelay.intent.0" to
// "setrelay.intent.1023". Partition counts must divide it.
const Slots = 1024

// Partition count limits for an ordered receiver. Each partition consumer
// filters Slots/partitions intent subjects and as many replay subjects, so
// the lower bound keeps a consumer's filter list short (at most 256
// subjects); the upper bound is the slot space.
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
// dead-lettered). A wider window isolates a failing subject longer but keeps
// more intents waiting (heartbeats, memory) for no more speed: with 16 the
// bench (256 partitions, 64 workers) used 15-30 % less CPU per SET than
// with 64.
const PartitionMaxAckPending = 16

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

func keySlot(key []byte) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % Slots)
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

// SlotSubject is the intent subject of slot.
func SlotSubject(slot int) string { return IntentSubject + "." + strconv.Itoa(slot) }

// IntentSubjectFor is the subject an intent about subject is published on.
func IntentSubjectFor(subject map[string]any) string { return SlotSubject(SubjectSlot(subject)) }

// slotReplaySubject is where a replay for receiver of an intent in slot is
// published: an ordered receiver's partition consumer sees it in line with
// newer intents about the same subject.
func slotReplaySubject(receiver string, slot int) string {
	return ReplaySubject(receiver) + "." + strconv.Itoa(slot)
}

// IsReplayFor reports whether a message subject is a replay addressed to
// receiver: "setrelay.replay.<token>" or "setrelay.replay.<token>.<slot>".
func IsReplayFor(subject, receiver string) bool {
	rest, ok := strings.CutPrefix(subject, ReplaySubject(receiver))
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	n, err := strconv.Atoi(strings.TrimPrefix(rest, "."))
	return rest[0] == '.' && err == nil && n >= 0 && n < Slots
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
// intent and replay subjects of the slots s with s % n == p, pinned to one
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
	cc.FilterSubjects = make([]string, 0, 2*Slots/n)
	for s := p; s < Slots; s += n {
		cc.FilterSubjects = append(cc.FilterSubjects, SlotSubject(s))
	}
	for s := p; s < Slots; s += n {
		cc.FilterSubjects = append(cc.FilterSubjects, slotReplaySubject(receiver, s))
	}
	cc.Metadata = map[string]string{
		"setrelay_receiver":   receiver,
		"setrelay_partition":  strconv.Itoa(p),
		"setrelay_partitions": strconv.Itoa(n),
	}
	return cc
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

// LogicalSubject is subject without its slot: "setrelay.intent.<slot>" is
// "setrelay.intent", "setrelay.replay.<token>.<slot>" is
// "setrelay.replay.<token>". Span names and metric labels use it, so that
// the 1024 slots do not multiply them.
func LogicalSubject(subject string) string {
	i := strings.LastIndexByte(subject, '.')
	if i < 0 {
		return subject
	}
	head, slot := subject[:i], subject[i+1:]
	if n, err := strconv.Atoi(slot); err != nil || n < 0 || n >= Slots {
		return subject
	}
	if head == IntentSubject || (strings.HasPrefix(head, ReplaySubjectPrefix) && !strings.Contains(head[len(ReplaySubjectPrefix):], ".")) {
		return head
	}
	return subject
}
