package worker

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/set"
)

// Pusher delivers one signed SET and reports what happened. *push.Client
// satisfies it. Push must honour ctx: the pool cancels it when the grace
// period of a shutdown runs out.
type Pusher interface {
	Push(ctx context.Context, jws []byte) push.Result
}

// Signer turns SET claims into a compact JWS. *signer.Signer satisfies it.
type Signer interface {
	Sign(payload []byte, withKID bool) (string, error)
}

// Limiter paces pushes to one receiver. *rate.Limiter and
// *fleet.RateLimiter satisfy it.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Gate bounds concurrent pushes to one receiver. *fleet.Gate satisfies it.
type Gate interface {
	Acquire(ctx context.Context) error
	Release()
}

// Receiver is one receiver the pool delivers to: its durable consumer, how
// its SETs are built, signed and pushed, and how its failures are handled.
type Receiver struct {
	// Name is the receiver's configured name, used in logs, metrics and
	// dead letters.
	Name string
	// Consumer is the receiver's durable pull consumer (queue.ConsumerName).
	Consumer jetstream.Consumer
	// Bulk, when set, is the same consumer reached over a second
	// connection that costs less per message in bulk: the relay's loopback
	// socket to its embedded server, beside the in-process pipe Consumer
	// uses (queue.ConnectLoopback says why). The fetch loop pulls through
	// it while a backlog drains, and through Consumer otherwise.
	Bulk jetstream.Consumer
	// Profile shapes the SET claims for this receiver.
	Profile set.Profile
	// SendKID puts the signing key's kid in the JOSE header.
	SendKID bool
	// Signer signs this receiver's SETs with its configured key.
	Signer Signer
	// Pusher delivers to this receiver's endpoint with its credentials.
	Pusher Pusher
	// Types are the event types the receiver asked for, as URIs or
	// aliases; empty means every type.
	Types []string
	// AllowPrivateTypes lets an empty Types include private event types
	// (absolute URIs outside CAEP/RISC/SSF and the GOV.UK vocabulary).
	// Without it such an intent, which decodes only when Config.Intent
	// allows private types for some other receiver, is skipped for this
	// one: a receiver never gets a private type it did not opt into. A
	// private type listed in Types is always wanted.
	AllowPrivateTypes bool
	// Limiter, when set, bounds the push rate to this receiver. It is
	// shared by everything in the process that pushes to the receiver.
	Limiter Limiter
	// Gate, when set, bounds the pushes to this receiver in flight at once
	// (a fleet's share of max_in_flight, see package fleet).
	Gate Gate
	// Retry bounds retries of this receiver's SETs.
	Retry RetryPolicy
	// Pause says when this receiver's consumer is paused.
	Pause PausePolicy
	// Accept, when set, is asked about every intent that passed the
	// type and receivers filters (replays are not asked): false settles it
	// without delivery, like an unrequested type; an error hands it back
	// for a later attempt. Receivers that choose their subjects (SSF
	// streams, package ssf) filter with it.
	Accept func(ctx context.Context, in *intent.Intent) (bool, error)
	// Reload, when set, re-reads the receiver's secret files and signing
	// key and returns a new signer and pusher. A blocked receiver is
	// reloaded before each probe, so fixing a file unblocks it without a
	// restart.
	Reload func(ctx context.Context) (Signer, Pusher, error)
	// Hints name the settings to fix in a blocked receiver's error line.
	Hints Hints
	// Observer, when set, is told when this process blocks the receiver
	// or a probe unblocks it, for whoever must tell the receiver (an SSF
	// stream's Stream Updated event, package ssf).
	Observer BlockObserver
	// Partitions, when set, are an ordered receiver's partition consumers
	// (queue.PartitionConsumerConfig, pinned to one puller at a time).
	// Every process pulls each; the one the server pins it to keeps its
	// intents in per-subject order (ordered.go). Consumer then carries only
	// intents published without a slot (old producers).
	Partitions []jetstream.Consumer
	// HoldOnDeadLetter (on_dead_letter: hold): once an intent of an
	// ordered receiver is dead-lettered, later intents about its subject
	// are dead-lettered as subject_held, until a replay of the last held
	// one is delivered or the held dead letters are purged (hold.go).
	HoldOnDeadLetter bool
}

// BlockObserver learns of the blocked-state changes a process makes for a
// receiver. The process that decides a change calls it synchronously, with
// a context bounded to a few seconds; two processes that block a receiver
// at the same moment may both call Blocked, so an implementation that
// sends something must deduplicate (package ssf does, with a
// compare-and-set on the stream's registry entry).
type BlockObserver interface {
	// Blocked: the receiver's consumer was paused for a configuration
	// failure; reason is the block reason (push.Reason*, ReasonKeyUnusable).
	Blocked(ctx context.Context, receiver, reason string)
	// Unblocked: a probe got through and the consumer was resumed.
	Unblocked(ctx context.Context, receiver string)
}

// PausePolicy says when a failing receiver's consumer is paused. A receiver
// that is down (answers only with retryable failures: 5xx, timeouts,
// refused connections) would burn every message's attempts for nothing, so
// its consumer is paused on the server, for every process, and probed.
//
// Down, not degraded: the consumer is paused when Threshold retryable
// failures come in a row AND the success ratio over the last Window is
// below MinSuccessRatio. The ratio is over first attempts when the window
// holds at least MinRequests of them (retries of intents that already
// failed are likelier to fail and must not outvote fresh traffic), else
// over every push. So a receiver that accepts most requests is never
// paused for a run of failures (with 64 pushes in flight, five in a row is
// a hiccup), while one that accepts nothing is paused at the Threshold-th
// failure, and a quiet feed with one intent failing is paused before that
// intent runs out of attempts.
type PausePolicy struct {
	// Threshold is the number of consecutive retryable failures that,
	// with a low success ratio, pauses the consumer (default 5, below
	// RetryPolicy's default 12 attempts so an outage pauses before it
	// dead-letters; negative disables pausing).
	Threshold int
	// Window is the span of the success ratio (default 30s).
	Window time.Duration
	// MinSuccessRatio is the success ratio below which a run of Threshold
	// failures means down (default 0.5).
	MinSuccessRatio float64
	// MinRequests is how many first attempts the window needs for the
	// ratio to be taken over them alone (default 20).
	MinRequests int
	// RampStart is how many messages this process may have in flight to
	// the receiver in the first second after it recovers (a paused or
	// blocked receiver gets through again); the limit doubles every second
	// up to the pool's Concurrency (default 4). A rate limit still applies.
	RampStart int
	// Initial is the first cool-down (default 30s). Each pause that
	// follows without a delivery in between doubles it, up to Max.
	Initial time.Duration
	// Max caps the cool-down (default 10m), and the backoff between probes
	// of a blocked receiver.
	Max time.Duration
	// ProbeInterval is how often a paused or blocked receiver is probed,
	// by one process of the fleet (default 10s, never more than Initial).
	// A blocked receiver's probes back off from it, doubling up to Max.
	ProbeInterval time.Duration
}

// Defaults for PausePolicy.
const (
	DefaultPauseThreshold = 5
	DefaultPauseInitial   = 30 * time.Second
	DefaultPauseMax       = 10 * time.Minute
	DefaultProbeInterval  = 10 * time.Second
	DefaultPauseWindow    = 30 * time.Second
	DefaultMinSuccess     = 0.5
	DefaultMinRequests    = 20
	DefaultRampStart      = 4
)

func (p PausePolicy) withDefaults() PausePolicy {
	if p.Threshold == 0 {
		p.Threshold = DefaultPauseThreshold
	}
	if p.Initial <= 0 {
		p.Initial = DefaultPauseInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultPauseMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.ProbeInterval <= 0 {
		p.ProbeInterval = DefaultProbeInterval
	}
	if p.Window <= 0 {
		p.Window = DefaultPauseWindow
	}
	if p.MinSuccessRatio <= 0 || p.MinSuccessRatio > 1 {
		p.MinSuccessRatio = DefaultMinSuccess
	}
	if p.MinRequests <= 0 {
		p.MinRequests = DefaultMinRequests
	}
	if p.RampStart <= 0 {
		p.RampStart = DefaultRampStart
	}
	p.ProbeInterval = min(p.ProbeInterval, p.Initial)
	return p
}

// Config configures a Pool.
type Config struct {
	// Concurrency is the number of messages the process works on at once,
	// across all receivers (default 64). It is also the most messages
	// pulled from JetStream and not yet settled.
	Concurrency int
	// GracePeriod is how long in-flight pushes may run after Run's context
	// is cancelled (default 20s; negative means none: in-flight pushes are
	// cancelled at once and their messages handed back).
	GracePeriod time.Duration
	// AckWait is the consumers' AckWait, used to time InProgress
	// heartbeats. Zero reads it from each consumer's cached info.
	AckWait time.Duration
	// FetchWait is how long a pull request waits on the server for the
	// messages it asked for (default 1s); those that arrive meanwhile are
	// worked on at once. It bounds how long shutdown waits for a fetch
	// loop: the request is not abandoned early, because the server could
	// still deliver into it and that message would wait out AckWait
	// unseen. Longer means fewer idle pull requests (one per receiver per
	// FetchWait) but a slower shutdown.
	FetchWait time.Duration
	// InfoInterval is how often consumer info is polled for the pending
	// and paused gauges, and to learn of pauses made by other processes
	// (default 5s).
	InfoInterval time.Duration
	// Intent is passed to intent.Decode. Set AllowPrivateTypes when any
	// receiver accepts private event types; receivers that did not ask
	// for such a type skip it (see Receiver.AllowPrivateTypes).
	Intent    intent.Options
	Receivers []Receiver
}

// Defaults for Config.
const (
	DefaultConcurrency  = 64
	DefaultGracePeriod  = 20 * time.Second
	DefaultFetchWait    = time.Second
	DefaultInfoInterval = 5 * time.Second
)

// Deps are the pool's collaborators, injected so tests and the command can
// choose them.
type Deps struct {
	// JS publishes dead letters and pauses consumers. Required.
	JS  jetstream.JetStream
	Log *zap.Logger
	// Registerer receives the pool's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Jitter returns a value in [0, 1) for retry delays; it must be safe
	// for concurrent use (default math/rand/v2.Float64).
	Jitter func() float64
	// Tracer starts a span per delivery attempt (see trace.go); nil is
	// tracing off, at no cost per message.
	Tracer trace.TracerProvider
}
