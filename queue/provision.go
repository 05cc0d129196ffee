package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and subject names. Producers publish on IntentSubject plus the
// intent's slot (SlotSubject); dead-letter replays go to
// ReplaySubjectPrefix plus the slot and the receiver's token
// (slotReplaySubject), so only that receiver delivers them (IsReplayFor).
const (
	IntentStream        = "SETRELAY_INTENTS"
	IntentSubject       = "setrelay.intent"
	ReplaySubjectPrefix = "setrelay.replay."
	DLQStream           = "SETRELAY_DLQ"
	DLQSubjectPrefix    = "setrelay.dlq."

	consumerPrefix = "rcv_"
)

// Token turns a receiver name into a NATS subject token and consumer-name
// suffix: every byte outside [A-Za-z0-9_-] becomes '_'. Receiver names with
// dots or spaces would otherwise create extra subject levels or invalid
// consumer names.
func Token(receiver string) string {
	b := []byte(receiver)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// ReceiverFilters are the subjects one receiver's intents and replays can
// be on, for consumers that must not see other receivers' replays at all
// (SSF poll streams hand messages to the receiver as they come).
func ReceiverFilters(receiver string) []string {
	return append(legacyFilters(receiver), IntentSubject+".*.*", ReplaySubjectPrefix+"*.*."+Token(receiver))
}

// ConsumerName is the durable consumer of a receiver: "rcv_" + Token(receiver).
func ConsumerName(receiver string) string { return consumerPrefix + Token(receiver) }

// ReplaySubject is where dead-letter replays for receiver are published.
func ReplaySubject(receiver string) string { return ReplaySubjectPrefix + Token(receiver) }

// DLQSubject is where receiver's dead letters are stored.
func DLQSubject(receiver string) string { return DLQSubjectPrefix + Token(receiver) }

// MaxDeliveriesAdvisorySubject is the advisory the server publishes when a
// receiver's consumer reaches MaxDeliver for a message: alert on it, since it
// means the worker never reached a decision for that message.
func MaxDeliveriesAdvisorySubject(receiver string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + IntentStream + "." + ConsumerName(receiver)
}

// intentSubjects are the intents stream's subjects: the bare subject and
// the single-token slots of older producers, every slot subject of the
// current layout by name, and replays. The slot subjects are listed, not
// matched with "setrelay.intent.*.*": an intent on a two-token subject
// that is no slot (setrelay.intent.256.0, .x.y, .07.0, from a producer
// that builds subjects itself) matches no partition consumer, so an
// ordered receiver would never see it while the stream acknowledged it.
// Not captured, its publish fails and the producer learns.
var intentSubjects = func() []string {
	s := []string{IntentSubject, IntentSubject + ".*"}
	for slot := range Slots {
		s = append(s, SlotSubject(slot))
	}
	return append(s, ReplaySubjectPrefix+">")
}()

// IntentStreamConfig is the intents stream's configuration for cfg.
//
// Interest retention with DiscardNew and no MaxAge: a message is removed only
// once every interested receiver consumer has acked or terminated it, never
// by age, and a full stream refuses new publishes (ErrStreamFull) rather than
// evicting work a receiver still needs.
func IntentStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:        IntentStream,
		Description: "setrelay event intents awaiting delivery to receivers",
		Subjects:    slices.Clone(intentSubjects),
		Retention:   jetstream.InterestPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      0,
		MaxMsgs:     limit(cfg.StreamMaxMsgs),
		MaxBytes:    limit(cfg.StreamMaxBytes),
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
	}
}

// DLQStreamConfig is the dead-letter stream's configuration for cfg.
//
// Limits retention with no age or size limit and DiscardNew: dead letters are
// the record of what was not delivered, so none is ever evicted to make room.
// If the server's storage runs out, PublishDeadLetter fails, the worker does
// not Term the message, and JetStream redelivers it later: the queue slows
// down for that receiver instead of losing the record (alert on
// dead-letter publish failures and on the stream's size).
func DLQStreamConfig(cfg Config) jetstream.StreamConfig {
	cfg = cfg.withDefaults()
	return jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "setrelay dead letters: intents that could not be delivered",
		Subjects:    []string{DLQSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      0,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		AllowDirect: true,
	}
}

// ConsumerConfig is receiver's durable pull consumer for cfg. It sees every
// intent, and every replay: the worker skips replays addressed to other
// receivers (IsReplayFor), which are rare, because a consumer without a
// filter is the server's fastest path. With the 1024 slot subjects in the
// stream, a filtered consumer cost about 40 % more CPU per SET (measured
// with `setrelay bench --ordering`, mode unordered_slotted). No BackOff: the
// worker chooses each delay with NakWithDelay, and a consumer BackOff would
// skew it.
//
// For an ordered receiver (cfg.Ordered) it sees only what older producers
// and relays publish (legacyFilters): intents on the bare
// "setrelay.intent" (before per-subject ordering) and on the first slot
// layout "setrelay.intent.<slot>", and replays of that age. They are
// delivered without an order guarantee; the partition consumers
// (PartitionConsumerConfig) take every intent in the current layout.
func ConsumerConfig(cfg Config, receiver string) jetstream.ConsumerConfig {
	cfg = cfg.withDefaults()
	name := ConsumerName(receiver)
	var filters []string // everything: see above
	if cfg.Ordered[receiver] > 0 {
		filters = legacyFilters(receiver)
	}
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "setrelay deliveries to receiver " + receiver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.AckWait,
		MaxDeliver:     cfg.MaxDeliver,
		MaxAckPending:  cfg.MaxAckPending,
		FilterSubjects: filters,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
		Replicas:       cfg.Replicas,
		Metadata:       map[string]string{"setrelay_receiver": receiver},
	}
}

func limit(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// Provision creates or updates both streams, one durable consumer per
// receiver, and the replay key bucket with its key (created once; see
// ReplayKeys). It is idempotent and safe to run from every process at
// start-up.
// Consumers of receivers no longer configured are left in place, because
// deleting one would drop that receiver's backlog: callers report them with
// OrphanConsumers and remove them with DeleteReceiver once truly gone.
func Provision(ctx context.Context, js jetstream.JetStream, cfg Config, receivers []string) error {
	if _, err := tokens(receivers); err != nil {
		return err
	}
	// The intents stream and its consumers are created back to back: with
	// Interest retention, a message stored while no consumer matches it is
	// deleted at once.
	var stream jetstream.Stream
	err := retryProvision(ctx, func(ctx context.Context) (err error) {
		stream, err = js.CreateOrUpdateStream(ctx, IntentStreamConfig(cfg))
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: provision stream %s: %w", IntentStream, err)
	}
	// Which receivers have partition consumers at all, from one listing of
	// names, so that retiring surplus partitions costs a receiver without
	// any nothing more. Without the listing every receiver is looked at.
	var partitioned map[string]bool
	if names, err := consumerNames(ctx, stream); err == nil {
		partitioned = map[string]bool{}
		for _, n := range names {
			if rest, ok := strings.CutPrefix(n, partitionPrefix); ok {
				if i := strings.LastIndexByte(rest, '_'); i > 0 {
					partitioned[rest[:i]] = true
				}
			}
		}
	}
	for _, r := range receivers {
		retire := partitioned == nil || partitioned[Token(r)]
		if err := provisionReceiver(ctx, stream, cfg, r, retire); err != nil {
			return err
		}
	}
	err = retryProvision(ctx, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateStream(ctx, DLQStreamConfig(cfg))
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: provision stream %s: %w", DLQStream, err)
	}
	return provisionReplayKey(ctx, js, cfg)
}

// provisionReceiver creates or updates receiver r's consumer and, for an
// ordered receiver, its partition consumers.
//
// With interest retention, narrowing a consumer's filter makes the server
// delete at once every message that no consumer matches any more (see
// cleanupNoInterestMessages in nats-server). So the consumers that will
// take over a subject are created before any existing one lets go of it:
// first the missing partition consumers (DeliverAll, so they take what
// the stream holds), then the changed partitions, and the receiver's own
// consumer last. Turning `ordering: subject` on for a receiver with a
// backlog, or raising its partitions, then moves the backlog rather than
// deleting it; a message already delivered through the old consumer may be
// delivered again through the new one (the same jti).
func provisionReceiver(ctx context.Context, stream jetstream.Stream, cfg Config, r string, retire bool) error {
	if n := cfg.Ordered[r]; n > 0 {
		if err := ValidPartitions(n); err != nil {
			return fmt.Errorf("queue: receiver %q: %w", r, err)
		}
		// Every process provisions at start-up: list once and touch only
		// the partition consumers that are missing or differ, rather than
		// sending hundreds of updates that change nothing.
		current := partitionConsumers(ctx, stream, r)
		var held *heldSubjects
		var changed []jetstream.ConsumerConfig
		for part := range n {
			want := PartitionConsumerConfig(cfg, r, part, n)
			have := current[want.Durable]
			if samePartition(have, want) {
				continue
			}
			if have != nil {
				if held == nil {
					held = legacyHeld(ctx, stream, r)
				}
				want.FilterSubjects = append(want.FilterSubjects, held.keep(have.FilterSubjects, want.FilterSubjects)...)
				if !samePartition(have, want) {
					changed = append(changed, want)
				}
				continue
			}
			if err := createOrUpdateConsumer(ctx, stream, want); err != nil {
				return fmt.Errorf("queue: provision consumer %s for receiver %q: %w", want.Durable, r, err)
			}
		}
		for _, want := range changed {
			if err := createOrUpdateConsumer(ctx, stream, want); err != nil {
				return fmt.Errorf("queue: provision consumer %s for receiver %q: %w", want.Durable, r, err)
			}
		}
	}
	want := ConsumerConfig(cfg, r)
	if len(want.FilterSubjects) == 0 {
		// nats-server (2.15.2, consumer.updateConfig) registers a
		// consumer's subjects for the stream's interest check only when it
		// has filters: a consumer updated from some filters to none is
		// registered on nothing, and with interest retention a new intent
		// that no other consumer matches is then not stored at all (the
		// producer still gets its ack) until the server restarts. So a
		// consumer that has filters (ordering turned off, or one made by
		// an older version) gets the filter ">" instead, which registers
		// every subject and which the file store reads as "all".
		var have *jetstream.ConsumerConfig
		err := retryProvision(ctx, func(ctx context.Context) error {
			c, err := stream.Consumer(ctx, want.Durable)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			if err == nil {
				have = &c.CachedInfo().Config
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("queue: look up consumer %s for receiver %q: %w", want.Durable, r, err)
		}
		if have != nil && (len(have.FilterSubjects) > 0 || have.FilterSubject != "") {
			want.FilterSubjects = []string{">"}
		}
	}
	if err := createOrUpdateConsumer(ctx, stream, want); err != nil {
		return fmt.Errorf("queue: provision consumer %s for receiver %q: %w", ConsumerName(r), r, err)
	}
	if !retire {
		return nil
	}
	return retirePartitions(ctx, stream, r, cfg.Ordered[r])
}

// consumerNames lists the names of stream's consumers.
func consumerNames(ctx context.Context, stream jetstream.Stream) ([]string, error) {
	var names []string
	l := stream.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	return names, l.Err()
}

// createOrUpdateConsumer is one consumer's provisioning step, retried.
func createOrUpdateConsumer(ctx context.Context, stream jetstream.Stream, cc jetstream.ConsumerConfig) error {
	return retryProvision(ctx, func(ctx context.Context) error {
		_, err := stream.CreateOrUpdateConsumer(ctx, cc)
		return err
	})
}

// provisionAttemptTimeout bounds one JetStream API request while
// provisioning; the caller's ctx bounds all of them.
const provisionAttemptTimeout = 10 * time.Second

// retryProvision runs one idempotent provisioning step until it succeeds,
// fails for good, or ctx ends. A JetStream cluster that has just formed, or
// has just lost a node, can take several seconds to place a replicated
// stream: meanwhile requests time out or the servers answer with a 5xx API
// error ("no suitable peers", "temporarily unavailable"). Those are
// retried; anything else (a 4xx such as a config the server refuses) is
// returned at once, since asking again cannot change the answer.
func retryProvision(ctx context.Context, step func(context.Context) error) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(200*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0), // ctx is the limit
	), ctx)
	var last error
	err := backoff.Retry(func() error {
		actx, cancel := context.WithTimeout(ctx, provisionAttemptTimeout)
		defer cancel()
		err := step(actx)
		if err == nil || ctx.Err() != nil || !transientJSError(err) {
			return backoff.Permanent(err)
		}
		last = err
		return err
	}, b)
	if err != nil && ctx.Err() != nil && last != nil {
		// The caller's deadline ended a run of transient failures: say
		// what kept failing, not only that time ran out.
		return fmt.Errorf("%w (still failing when time ran out: %v)", ctx.Err(), last)
	}
	return err
}

// transientJSError reports whether a JetStream API call may succeed if
// asked again: a request that timed out or found no JetStream server, or a
// server-side (5xx) API error.
func transientJSError(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 500
}

// tokens maps each receiver's Token to its name, rejecting empty names and
// names that would share a consumer.
func tokens(receivers []string) (map[string]string, error) {
	seen := make(map[string]string, len(receivers))
	for _, r := range receivers {
		if r == "" {
			return nil, errors.New("queue: empty receiver name")
		}
		tok := Token(r)
		if other, dup := seen[tok]; dup {
			return nil, fmt.Errorf("queue: receivers %q and %q map to the same consumer %s", other, r, ConsumerName(r))
		}
		seen[tok] = r
	}
	return seen, nil
}

// Orphan is a receiver consumer whose receiver is no longer configured.
type Orphan struct {
	// Consumer is the durable consumer's name, "rcv_" + Token(receiver).
	Consumer string
	// Receiver is the receiver's name as recorded on the consumer when it
	// was created, or the consumer's token when that is missing.
	Receiver string
	// Pending counts the intents the consumer still holds in the stream:
	// not yet delivered to it, plus delivered and not yet acknowledged.
	Pending uint64
}

// Orphans lists the intents stream's receiver consumers that belong to
// none of receivers, sorted by name. With Interest retention each of them
// keeps every intent it has not acknowledged in the stream, forever, so
// start-up warns about them and 'setrelay provision --prune' deletes them.
func Orphans(ctx context.Context, js jetstream.JetStream, receivers []string) ([]Orphan, error) {
	configured, err := tokens(receivers)
	if err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, IntentStream)
	if err != nil {
		return nil, fmt.Errorf("queue: stream %s: %w", IntentStream, err)
	}
	var orphans []Orphan
	infos := stream.ListConsumers(ctx)
	for ci := range infos.Info() {
		tok, ok := strings.CutPrefix(ci.Name, consumerPrefix)
		if !ok {
			// A partition consumer of an ordered receiver: its receiver
			// is recorded in its metadata.
			if !strings.HasPrefix(ci.Name, partitionPrefix) || ci.Config.Metadata["setrelay_receiver"] == "" {
				continue
			}
			tok = Token(ci.Config.Metadata["setrelay_receiver"])
		}
		if _, ok := configured[tok]; ok {
			continue
		}
		o := Orphan{Consumer: ci.Name, Receiver: tok, Pending: ci.NumPending + uint64(max(ci.NumAckPending, 0))}
		if r := ci.Config.Metadata["setrelay_receiver"]; r != "" {
			o.Receiver = r
		}
		orphans = append(orphans, o)
	}
	if err := infos.Err(); err != nil {
		return nil, fmt.Errorf("queue: list consumers of %s: %w", IntentStream, err)
	}
	sort.Slice(orphans, func(i, j int) bool { return orphans[i].Consumer < orphans[j].Consumer })
	return orphans, nil
}

// DeleteOrphan deletes a consumer Orphans reported, which releases every
// intent only it still needed: the intents stream shrinks to what the
// remaining consumers hold. It refuses a name that is not a receiver
// consumer, so it cannot delete anything setrelay did not create.
func DeleteOrphan(ctx context.Context, js jetstream.JetStream, consumer string) error {
	tok, ok := strings.CutPrefix(consumer, consumerPrefix)
	if !ok {
		tok, ok = strings.CutPrefix(consumer, partitionPrefix)
	}
	if !ok || tok == "" {
		return fmt.Errorf("queue: %q is not a receiver consumer (rcv_<name> or ord_<name>_<partition>)", consumer)
	}
	if err := js.DeleteConsumer(ctx, IntentStream, consumer); err != nil {
		return fmt.Errorf("queue: delete consumer %s: %w", consumer, err)
	}
	return nil
}

// DeleteReceiver deletes a receiver's consumer, which releases every intent
// only it still needed. Run it only after the receiver is removed for good.
func DeleteReceiver(ctx context.Context, js jetstream.JetStream, receiver string) error {
	if err := js.DeleteConsumer(ctx, IntentStream, ConsumerName(receiver)); err != nil {
		return fmt.Errorf("queue: delete consumer %s: %w", ConsumerName(receiver), err)
	}
	return nil
}
