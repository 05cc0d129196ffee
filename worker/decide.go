package worker

import (
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/setrelay/setrelay/push"
)

// ActionKind says how a message is settled.
type ActionKind int

// The ways a message can be settled. There is deliberately no bare "Term":
// terminating a message without first writing it to the dead-letter stream
// would lose it, which the worker never does.
const (
	// Ack: the receiver accepted the SET; the message is done.
	Ack ActionKind = iota + 1
	// NakDelay: try again after Action.Delay. JetStream redelivers it,
	// incrementing the delivery count that Decide reads as the attempt.
	NakDelay
	// DeadLetter: publish a dead letter with Action.Reason, wait for its
	// ack, then Term the message. A Delay, set only when an earlier store
	// failed on the last delivery, is waited out before storing again.
	DeadLetter
	// Skip: the message is not for this receiver (or another receiver
	// gives its verdict); ack it without sending.
	Skip
	// HandBack: Nak after Action.Delay (0: at once) without counting the
	// delivery as an attempt; the message was not this intent's failure
	// (a paused or blocked receiver, a busy key, shutdown).
	HandBack
	// Block: the relay's configuration for the receiver is wrong. Block
	// the receiver for every process with Action.Reason, then hand the
	// message back like HandBack.
	Block
)

// String names the kind for logs and test failures.
func (k ActionKind) String() string {
	switch k {
	case Ack:
		return "ack"
	case NakDelay:
		return "nak_delay"
	case DeadLetter:
		return "dead_letter"
	case Skip:
		return "skip"
	case HandBack:
		return "hand_back"
	case Block:
		return "block"
	default:
		return "ActionKind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Reasons Decide gives for dead letters that are not the push result's own.
const (
	// ReasonAttemptsExhausted: the receiver kept failing transiently for
	// RetryPolicy.MaxAttempts attempts.
	ReasonAttemptsExhausted = "attempts_exhausted"
	// ReasonMaxAge: the intent has been retried for longer than
	// RetryPolicy.MaxAge.
	ReasonMaxAge = "max_age_exceeded"
	// ReasonInvalidIntent: the intent failed decoding or validation; it is
	// dead-lettered at once and never retried.
	ReasonInvalidIntent = "invalid_intent"
	// ReasonMaxDeliveries: the consumer's MaxDeliver safety net was about
	// to stop redelivering a message that was still to be retried (many
	// outage hand-backs, which do not count as attempts, or crashes).
	ReasonMaxDeliveries = "max_deliveries"
	// ReasonInternal: processing panicked. The message is dead-lettered so a
	// poison message cannot crash every worker in turn.
	ReasonInternal = "internal_error"
)

// Action is what to do with one message.
type Action struct {
	Kind ActionKind
	// Delay is how long JetStream should wait before redelivering
	// (NakDelay, HandBack, Block), or how long to wait before storing a
	// dead letter again (DeadLetter).
	Delay time.Duration
	// Reason is the dead-letter reason code for DeadLetter, or the push
	// result's reason for NakDelay (for metrics and logs).
	Reason string
}

// RetryPolicy bounds how long and how often a SET is retried. Zero fields
// take the defaults below, so a zero RetryPolicy is usable.
type RetryPolicy struct {
	// Initial is the delay after the first failed attempt (default 1s).
	Initial time.Duration
	// Max caps the exponential schedule (default 10m). A receiver's
	// Retry-After may exceed it: push already caps Retry-After at its own
	// MaxRetryAfter, and retrying sooner than asked is what RFC 8935
	// receivers punish with more 429s.
	Max time.Duration
	// Multiplier grows the delay per attempt (default 2).
	Multiplier float64
	// MaxAttempts is the number of attempts after which a still-failing
	// SET is dead-lettered (default 12).
	MaxAttempts int
	// MaxAge is how long after it was stored an intent may still be
	// retried (default 72h).
	MaxAge time.Duration
}

// Defaults applied by RetryPolicy.WithDefaults.
const (
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 10 * time.Minute
	DefaultRetryMultiplier  = 2.0
	DefaultRetryMaxAttempts = 12
	DefaultRetryMaxAge      = 72 * time.Hour
	// RandomizationFactor spreads each delay uniformly over
	// [d·(1−f), d·(1+f)], so a receiver recovering from an outage is not hit
	// by every retry at the same instant. It is cenkalti/backoff's default.
	RandomizationFactor = backoff.DefaultRandomizationFactor
)

// WithDefaults returns p with zero fields replaced by the defaults.
func (p RetryPolicy) WithDefaults() RetryPolicy {
	if p.Initial <= 0 {
		p.Initial = DefaultRetryInitial
	}
	if p.Max <= 0 {
		p.Max = DefaultRetryMax
	}
	if p.Max < p.Initial {
		p.Max = p.Initial
	}
	if p.Multiplier < 1 {
		p.Multiplier = DefaultRetryMultiplier
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultRetryMaxAttempts
	}
	if p.MaxAge <= 0 {
		p.MaxAge = DefaultRetryMaxAge
	}
	return p
}

// Decide is Settle's rule for a push result on its own, without the
// receiver's state: the retry schedule and its limits. It is pure: the caller passes the attempt number (1 for the first
// delivery), the intent's age (now minus the time JetStream stored it), the
// policy, and a jitter value in [0, 1) (0.5 means no jitter), so every
// branch can be table-tested.
//
// The rules, in order:
//   - Delivered: Ack, whatever the age or attempt.
//   - Blocked: Block with the push result's reason; the SET is kept.
//   - Permanent: DeadLetter with the push result's reason. Retrying a SET the
//     receiver rejected (invalid_audience, 404 ...) can only fail again.
//   - Retry or Refresh, on the last allowed attempt: DeadLetter
//     "attempts_exhausted".
//   - Retry or Refresh, older than MaxAge: DeadLetter "max_age_exceeded".
//   - Otherwise NakDelay with the exponential delay for this attempt,
//     jittered, capped at Max, and never shorter than the receiver's
//     Retry-After.
func Decide(r push.Result, attempt int, age time.Duration, p RetryPolicy, jitter float64) Action {
	p = p.WithDefaults()
	switch r.Outcome {
	case push.Delivered:
		return Action{Kind: Ack, Reason: r.Reason}
	case push.Retry, push.Refresh:
		// Handled below.
	case push.Blocked:
		// The receiver's configuration, not the SET: keep it.
		return Action{Kind: Block, Reason: reasonOr(r.Reason, reasonBlocked)}
	default:
		// Permanent, and any outcome this version does not know: a
		// dead letter is visible and replayable, a guess is not.
		return Action{Kind: DeadLetter, Reason: reasonOr(r.Reason, "permanent")}
	}
	if attempt >= p.MaxAttempts {
		return Action{Kind: DeadLetter, Reason: ReasonAttemptsExhausted}
	}
	if age > p.MaxAge {
		return Action{Kind: DeadLetter, Reason: ReasonMaxAge}
	}
	d := retryDelay(attempt, p, jitter)
	if d < r.RetryAfter {
		d = r.RetryAfter
	}
	return Action{Kind: NakDelay, Delay: d, Reason: reasonOr(r.Reason, "retry")}
}

func reasonOr(reason, fallback string) string {
	if reason == "" {
		return fallback
	}
	return reason
}

// fixedClock keeps ExponentialBackOff from reading the wall clock: the
// schedule is used with MaxElapsedTime 0, so elapsed time never matters,
// and Decide stays pure.
type fixedClock struct{}

func (fixedClock) Now() time.Time { return time.Time{} }

// retryDelay is the delay after a failed attempt n (n ≥ 1): the n-th
// interval of cenkalti/backoff's exponential schedule (Initial, then
// ×Multiplier, capped at Max), randomised by jitter in [0, 1) the way the
// library randomises it, and capped at Max again.
func retryDelay(attempt int, p RetryPolicy, jitter float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	b := backoff.ExponentialBackOff{
		InitialInterval: p.Initial,
		// The library would draw its own random number; a zero factor
		// makes NextBackOff return the bare interval, and the caller's
		// jitter is applied below instead.
		RandomizationFactor: 0,
		Multiplier:          p.Multiplier,
		MaxInterval:         p.Max,
		MaxElapsedTime:      0,
		Stop:                backoff.Stop,
		Clock:               fixedClock{},
	}
	b.Reset()
	var d time.Duration
	for i := 0; i < attempt; i++ {
		d = b.NextBackOff()
		if d >= p.Max {
			break // every later interval is Max too
		}
	}
	if jitter < 0 || jitter >= 1 || jitter != jitter { // NaN too
		jitter = 0.5
	}
	delta := RandomizationFactor * float64(d)
	d = time.Duration(float64(d) - delta + jitter*2*delta)
	if d > p.Max {
		d = p.Max
	}
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}
