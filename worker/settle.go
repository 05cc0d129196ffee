package worker

import (
	"strconv"
	"time"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
)

// Stage is how far handle got with a message before it had to be settled.
type Stage uint8

// The stages, in the order handle runs them.
const (
	// StageInvalid: the intent failed decoding or validation.
	StageInvalid Stage = iota + 1
	// StageUnknownReceiver: the intent's receivers names no receiver this
	// process has configured (a typo, or one since removed).
	StageUnknownReceiver
	// StageUnwanted: the receiver did not ask for the intent's type, or the
	// intent (or replay) is addressed to other receivers.
	StageUnwanted
	// StageInvalidReplay: a message on the receiver's replay subject that
	// `dlq replay` did not make (replay.go).
	StageInvalidReplay
	// StageReplayUnchecked: a replay whose authenticity cannot be checked
	// now (the replay key is unavailable).
	StageReplayUnchecked
	// StageFilterUnavailable: the receiver's own subject filter
	// (Receiver.Accept, SSF streams) could not be asked now.
	StageFilterUnavailable
	// StageSubjectHeld: an earlier intent about the subject is
	// dead-lettered and the receiver holds subjects on a dead letter
	// (on_dead_letter: hold, hold.go).
	StageSubjectHeld
	// StageHoldUnchecked: whether the subject is held cannot be read now
	// (the hold bucket is unavailable).
	StageHoldUnchecked
	// StageHeld: not pushed because the receiver is paused or blocked.
	StageHeld
	// StageReleased: an ordered receiver's intent that waited, unstarted,
	// in a partition this process gives up (shutdown, or the partition
	// was pinned to another process): handed back for the partition's
	// next owner (ordered.go).
	StageReleased
	// StageBuild: the SET could not be built for this receiver's profile.
	StageBuild
	// StageSign: signing failed; Facts.SignError says how.
	StageSign
	// StageInterrupted: shutdown's grace period ran out before or during
	// the push (rate-limit wait or HTTP request).
	StageInterrupted
	// StagePushed: the push ran; Facts.Result says what happened.
	StagePushed
	// StagePanic: processing panicked.
	StagePanic
)

var stageNames = [...]string{"", "invalid", "unknown_receiver", "unwanted", "invalid_replay", "replay_unchecked", "filter_unavailable", "subject_held", "hold_unchecked", "held", "released", "build", "sign", "interrupted", "pushed", "panic"}

// String names the stage for logs and test failures.
func (s Stage) String() string {
	if int(s) < len(stageNames) && s != 0 {
		return stageNames[s]
	}
	return "Stage(" + strconv.Itoa(int(s)) + ")"
}

// SignError classifies a signing failure (see signer.ErrTransient and
// signer.ErrKeyUnusable).
type SignError uint8

const (
	// SignFailed is any other signing failure: retried like a transient
	// push failure, counting attempts.
	SignFailed SignError = iota
	// SignTransient is a throttled KMS or busy HSM: retried soon, counting
	// neither an attempt nor against the receiver.
	SignTransient
	// SignKeyUnusable is a disabled, deleted or denied key: a configuration
	// failure that blocks the receiver.
	SignKeyUnusable
)

// State is a receiver's delivery state, as setrelay_receiver_state shows it.
type State uint8

const (
	// StateOK: delivering.
	StateOK State = iota
	// StateFailing: recent pushes failed, but not enough to call it down.
	StateFailing
	// StatePaused: down; its consumer is paused on the server and probed.
	StatePaused
	// StateBlocked: a configuration failure; its consumer is paused on the
	// server until a probe with the fixed configuration gets through.
	StateBlocked
)

var stateNames = [...]string{"ok", "failing", "paused", "blocked"}

// String is the state's label value.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Facts are everything Settle needs to know about one message. handle
// gathers them while it runs the stages; apply carries out the Action.
type Facts struct {
	// Stage is how far processing got.
	Stage Stage
	// Result is the push result (StagePushed).
	Result push.Result
	// SignError classifies a signing failure (StageSign).
	SignError SignError
	// Attempt is the attempt number: JetStream's delivery count less the
	// deliveries that were handed back without counting.
	Attempt int
	// Deliveries is JetStream's delivery count.
	Deliveries int
	// Last is set on the consumer's MaxDeliver-th delivery: JetStream will
	// not deliver the message again, so it must not be handed back.
	Last bool
	// Age is how long ago JetStream stored the intent.
	Age time.Duration
	// State is the receiver's state when the message is settled.
	State State
	// Probe is set when the push probed a receiver known to be failing,
	// paused or blocked: its failure is the receiver's, not the message's.
	Probe bool
	// Streak counts consecutive pushes, from different intents, answered
	// with the same receiver-wide rejection (RFC 8935's invalid_key,
	// invalid_issuer, invalid_audience, or a 403), this one included.
	Streak int
	// OthersDelivered is set when the receiver accepted other SETs since
	// this intent was first answered with such a code: the rejection is the
	// intent's own.
	OthersDelivered bool
	// Owner is set when this receiver gives the intent-level verdicts
	// (invalid intent, unknown receiver) for the whole process; the others
	// skip such intents, so each is dead-lettered once.
	Owner bool
	// Shutdown is set once the work context is cancelled.
	Shutdown bool
	// StoreFailures counts dead letters for this message that could not be
	// stored during this delivery.
	StoreFailures int
	// Hold is how long a message handed back for a paused or blocked
	// receiver waits before it may be delivered again: the probe interval.
	Hold time.Duration
	// Retry is the receiver's retry policy.
	Retry RetryPolicy
	// Jitter is a value in [0, 1) for retry delays.
	Jitter float64
}

// BlockStreak is how many different intents in a row must be answered
// with the same invalid_key, invalid_issuer, invalid_audience or 403
// (forbidden) before the receiver is blocked. One such answer can be the
// intent's own problem; the same answer for several different intents, with
// nothing delivered in between, is the relay's key, issuer, audience,
// address or credentials being wrong for this receiver. Until then such an intent is retried (counted), up to
// BlockStreak attempts, unless the receiver accepts other SETs meanwhile:
// then it is dead-lettered with the receiver's code at once.
const BlockStreak = 3

// Reasons Settle gives besides the push reasons and Decide's.
const (
	// ReasonUnknownReceiver: the intent's receivers names no configured
	// receiver.
	ReasonUnknownReceiver = "unknown_receiver"
	// ReasonKeyUnusable: the signing key is disabled, deleted or denied.
	ReasonKeyUnusable = "key_unusable"
	// ReasonDeadLetterUnstored: a dead letter could not be stored on the
	// message's last delivery, within the in-place retries.
	ReasonDeadLetterUnstored = "dead_letter_unstored"
	// reasonSignTransient is the hand-back reason of a transient signing
	// failure.
	reasonSignTransient = "sign_transient"
	// reasonReplayUnchecked is the hand-back reason of a replay whose key
	// could not be read.
	reasonReplayUnchecked = "replay_unchecked"
	// reasonFilterUnavailable is the hand-back reason when the receiver's
	// subject filter could not be asked.
	reasonFilterUnavailable = "filter_unavailable"
	// reasonHoldUnchecked is the hand-back reason when the subject hold
	// bucket could not be read.
	reasonHoldUnchecked = "hold_unchecked"
	// reasonBlocked is the hand-back reason while the receiver is blocked.
	reasonBlocked = "blocked"
	// reasonReleased is the hand-back reason of an ordered receiver's
	// unstarted intent when this process gives up its partition.
	reasonReleased = "released"
	// reasonShutdown is the hand-back reason at shutdown.
	reasonShutdown = "shutdown"
	// reasonDeadLetterStore is the retry reason when storing a dead letter
	// failed.
	reasonDeadLetterStore = "dead_letter_store_failed"
)

// Storing a dead letter on the last delivery is retried in place, since
// the message cannot be handed back; at most this many times, pausing
// lastDeliveryRetry, doubling up to deadLetterRetry (about 30 s in all), so
// a dead-letter stream that stays unavailable never holds a worker for
// long.
const maxLastDeliveryStores = 9

// Settle is the one place that decides how a message is settled. It is
// pure: everything it looks at is in f. The table, in order:
//
//	stage             condition                               action
//	panic                                                     DeadLetter internal_error
//	invalid           owner receiver                          DeadLetter invalid_intent
//	invalid           other receivers                         Skip
//	unknown_receiver  owner receiver                          DeadLetter unknown_receiver
//	unknown_receiver  other receivers                         Skip
//	unwanted                                                  Skip
//	invalid_replay                                            DeadLetter invalid_replay
//	replay_unchecked  replay key unavailable                  HandBack after replayKeyRetry
//	filter_unavailable  Receiver.Accept failed                HandBack after acceptRetry
//	subject_held      earlier intent of the subject held      DeadLetter subject_held
//	hold_unchecked    hold bucket unavailable                 HandBack after holdRetry
//	held              receiver paused or blocked              HandBack after Hold
//	released          ordered partition given up, unstarted   HandBack at once
//	build                                                     DeadLetter build_failed
//	sign              transient                               HandBack after the retry delay
//	sign              key unusable                            Block key_unusable
//	sign              other                                   as Decide, reason sign_failed
//	interrupted                                               HandBack at once
//	pushed            shutdown and not delivered              HandBack at once
//	pushed            delivered                               Ack
//	pushed            blocked (configuration)                 Block with the push reason
//	pushed            invalid_key/issuer/audience or 403,     Block with that reason
//	                  Streak≥3
//	pushed            same, others delivered since            DeadLetter with that reason
//	pushed            same, attempt < 3                       NakDelay (retry schedule)
//	pushed            other permanent                         DeadLetter with the push reason
//	pushed            retryable, receiver blocked             HandBack after Hold
//	pushed            retryable, probe                        as Decide with the probe uncounted;
//	                                                          a NakDelay becomes a HandBack
//	pushed            retryable                               Decide
//
// Then two overrides:
//   - On the last delivery (Last), HandBack, NakDelay and Block become
//     DeadLetter max_deliveries: JetStream would never deliver it again.
//   - After a dead letter failed to be stored (StoreFailures > 0): on the
//     last delivery the DeadLetter is tried again after a growing Delay, up
//     to maxLastDeliveryStores times, then HandBack dead_letter_unstored
//     (the message stays in the stream; apply logs it as an error); at
//     shutdown HandBack; otherwise NakDelay with a backoff that grows with
//     the delivery count, so the worker is freed at once.
func Settle(f Facts) Action {
	a := settleStage(&f)
	if f.Last && (a.Kind == HandBack || a.Kind == NakDelay || a.Kind == Block) {
		a = Action{Kind: DeadLetter, Reason: ReasonMaxDeliveries}
	}
	if f.StoreFailures > 0 && a.Kind == DeadLetter {
		switch {
		case f.Last && f.StoreFailures < maxLastDeliveryStores:
			a.Delay = min(lastDeliveryRetry<<(f.StoreFailures-1), deadLetterRetry)
		case f.Last:
			a = Action{Kind: HandBack, Reason: ReasonDeadLetterUnstored}
		case f.Shutdown:
			a = Action{Kind: HandBack, Reason: reasonShutdown}
		default:
			p := RetryPolicy{Initial: deadLetterRetry, Max: 10 * deadLetterRetry}.WithDefaults()
			a = Action{Kind: NakDelay, Delay: retryDelay(f.Deliveries, p, f.Jitter), Reason: reasonDeadLetterStore}
		}
	}
	return a
}

func settleStage(f *Facts) Action {
	switch f.Stage {
	case StageInvalid:
		if f.Owner {
			return Action{Kind: DeadLetter, Reason: ReasonInvalidIntent}
		}
		return Action{Kind: Skip, Reason: ReasonInvalidIntent}
	case StageUnknownReceiver:
		if f.Owner {
			return Action{Kind: DeadLetter, Reason: ReasonUnknownReceiver}
		}
		return Action{Kind: Skip, Reason: ReasonUnknownReceiver}
	case StageUnwanted:
		return Action{Kind: Skip}
	case StageInvalidReplay:
		return Action{Kind: DeadLetter, Reason: ReasonInvalidReplay}
	case StageReplayUnchecked:
		// Not the message's fault: neither an attempt nor a verdict.
		return Action{Kind: HandBack, Delay: replayKeyRetry, Reason: reasonReplayUnchecked}
	case StageFilterUnavailable:
		// The filter's store is unreachable: not the message's fault.
		return Action{Kind: HandBack, Delay: acceptRetry, Reason: reasonFilterUnavailable}
	case StageSubjectHeld:
		// Kept, in order, in the dead-letter stream: the partition moves
		// on for the other subjects.
		return Action{Kind: DeadLetter, Reason: queue.ReasonSubjectHeld}
	case StageHoldUnchecked:
		// The hold cannot be read: delivering might overtake a held
		// intent, so wait; not the message's fault.
		return Action{Kind: HandBack, Delay: holdRetry, Reason: reasonHoldUnchecked}
	case StageHeld:
		reason := reasonPaused
		if f.State == StateBlocked {
			reason = reasonBlocked
		}
		return Action{Kind: HandBack, Delay: f.Hold, Reason: reason}
	case StageReleased:
		// Never tried: not an attempt. At once, since the partition's
		// next owner waits for it before it starts the partition.
		return Action{Kind: HandBack, Reason: reasonReleased}
	case StageBuild:
		return Action{Kind: DeadLetter, Reason: ReasonBuildFailed}
	case StageSign:
		switch f.SignError {
		case SignTransient:
			return Action{Kind: HandBack, Delay: retryDelay(f.Attempt, f.Retry.WithDefaults(), f.Jitter), Reason: reasonSignTransient}
		case SignKeyUnusable:
			return Action{Kind: Block, Delay: f.Hold, Reason: ReasonKeyUnusable}
		}
		return Decide(push.Result{Outcome: push.Retry, Reason: reasonSign}, f.Attempt, f.Age, f.Retry, f.Jitter)
	case StageInterrupted:
		return Action{Kind: HandBack, Reason: reasonShutdown}
	case StagePushed:
		return settlePush(f)
	}
	// StagePanic, and any stage this version does not know: a dead letter
	// is visible and replayable, a guess is not.
	return Action{Kind: DeadLetter, Reason: ReasonInternal}
}

func settlePush(f *Facts) Action {
	r := &f.Result
	if f.Shutdown && r.Outcome != push.Delivered {
		return Action{Kind: HandBack, Reason: reasonShutdown}
	}
	switch r.Outcome {
	case push.Delivered:
		return Action{Kind: Ack, Reason: r.Reason}
	case push.Blocked:
		return Action{Kind: Block, Delay: f.Hold, Reason: reasonOr(r.Reason, reasonBlocked)}
	case push.Permanent:
		if receiverWide(r.Reason) {
			if f.Streak >= BlockStreak {
				return Action{Kind: Block, Delay: f.Hold, Reason: r.Reason}
			}
			if !f.OthersDelivered && f.Attempt < BlockStreak {
				// Another try after the usual delay: by then other
				// intents show whether the receiver rejects them all
				// (block) or only this one (dead letter).
				return Action{Kind: NakDelay, Delay: retryDelay(f.Attempt, f.Retry.WithDefaults(), f.Jitter), Reason: r.Reason}
			}
		}
		return Decide(*r, f.Attempt, f.Age, f.Retry, f.Jitter)
	case push.Retry, push.Refresh:
		if f.State == StateBlocked {
			return Action{Kind: HandBack, Delay: f.Hold, Reason: reasonBlocked}
		}
		if f.Probe {
			a := Decide(*r, max(f.Attempt-1, 1), f.Age, f.Retry, f.Jitter)
			if a.Kind == NakDelay {
				a.Kind = HandBack
			}
			return a
		}
	}
	return Decide(*r, f.Attempt, f.Age, f.Retry, f.Jitter)
}

// receiverWide reports whether a rejection, repeated for several intents,
// is about the relay's configuration for the receiver rather than about one
// SET: RFC 8935's codes for the key, issuer and audience, and a 403 (an
// address not on the receiver's allow-list, a token without the scope).
// Any one of them can also be one SET's own problem, which is why Settle
// waits for a streak before it blocks.
func receiverWide(reason string) bool {
	switch reason {
	case push.ReasonInvalidKey, push.ReasonInvalidIssuer, push.ReasonInvalidAudience, push.ReasonForbidden:
		return true
	}
	return false
}
