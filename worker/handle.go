package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// intentPrefix bounds the excerpt of an intent too large to keep in its
// dead letter.
const intentPrefix = 200

// Reasons for dead letters raised before a push.
const (
	// ReasonBuildFailed: the intent is valid but its SET cannot be built
	// for this receiver's profile. Retrying cannot help.
	ReasonBuildFailed = "build_failed"
	// reasonSign is the retry reason when signing fails (a KMS outage,
	// say); it is retried like a transient push failure.
	reasonSign = "sign_failed"
	// reasonPaused is the retry reason of a message handed back unpushed
	// while its consumer is paused.
	reasonPaused = "paused"
)

// deadLetterRetry is how soon a message whose dead letter could not be
// stored comes back. It must not be Termed: that would lose it.
const deadLetterRetry = 5 * time.Second

// lastDeliveryRetry is the first pause before storing a dead letter again
// on a message's last delivery, which cannot be handed back; it doubles up
// to deadLetterRetry.
const lastDeliveryRetry = 100 * time.Millisecond

// job is what handle knows about one message.
type job struct {
	msg      jetstream.Msg
	seq      uint64
	attempt  int
	stored   time.Time
	start    time.Time
	intentID string
	replayOf string
	data     []byte
	// last is set on the consumer's MaxDeliver-th delivery: JetStream will
	// not deliver the message again, so it must not be handed back.
	last bool
}

// handle takes one message from delivery to settlement: decode, filter,
// build, sign, push, decide, act. ctx is the pool's work context, which
// outlives Run's context by the grace period.
func (p *Pool) handle(ctx context.Context, r *rcv, msg jetstream.Msg) {
	p.m.inflight.Inc()
	defer p.m.inflight.Dec()
	beat := startBeat(msg, r.beatEvery)
	defer beat.stop()

	j := job{msg: msg, start: p.now(), data: msg.Data()}
	// A panic here would be a bug in this code or a dependency, triggered
	// by something in this message. Crashing would make JetStream
	// redeliver it to the next worker, which would crash too: a poison
	// message taking down every process in turn. Recovering and
	// dead-lettering it keeps the queue moving and keeps the evidence.
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("panic while handling a message; dead-lettering it",
				zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq),
				zap.Any("panic", v), zap.ByteString("stack", debug.Stack()))
			p.deadLetter(ctx, r, &j, queue.DeadLetter{Reason: ReasonInternal, Description: fmt.Sprint(v)})
		}
	}()

	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack and nothing to redeliver.
		p.log.Error("message without JetStream metadata", zap.String("receiver", r.Name), zap.Error(err))
		return
	}
	j.seq = md.Sequence.Stream
	j.stored = md.Timestamp
	j.attempt = r.attempt(j.seq, md.NumDelivered)
	j.last = r.maxDeliver > 0 && md.NumDelivered >= uint64(r.maxDeliver)

	in, err := intent.Decode(j.data, p.cfg.Intent)
	if err != nil {
		dl := queue.DeadLetter{Reason: ReasonInvalidIntent, Description: err.Error()}
		var ve *intent.ValidationError
		if errors.As(err, &ve) {
			dl.Description, dl.Errors = ve.Summary(), ve.Problems() // the list is stored once, in errors
			// The id, when it parsed and is valid, names the dead letter.
			j.intentID = ve.ID
		}
		p.deadLetter(ctx, r, &j, dl)
		return
	}
	j.intentID = in.ID

	if subj := msg.Subject(); strings.HasPrefix(subj, queue.ReplaySubjectPrefix) {
		// A replay is addressed to one receiver by an operator: it
		// bypasses the type and receivers filters, which let it through
		// the first time anyway. So it must be authentic (replay.go).
		if subj != r.replaySubject {
			p.skip(r, &j)
			return
		}
		if !p.authenticReplay(ctx, r, &j) {
			return
		}
	} else if !r.wants(in) {
		p.skip(r, &j)
		return
	} else if !p.accepts(ctx, r, &j, in) {
		return
	}

	// While the consumer is paused, do not even sign: hand it back.
	if p.handBackIfPaused(r, &j) {
		return
	}

	in = p.acceptedExtras(r, &j, in) // extra events follow r's filter too (extras.go)
	// iat is the time JetStream stored the intent, so a redelivery
	// re-signs byte-identical claims with the same jti.
	claims, err := set.Build(in, r.Profile, set.Options{IssuedAt: j.stored, ReplayOf: j.replayOf})
	if err != nil {
		p.deadLetter(ctx, r, &j, queue.DeadLetter{Reason: ReasonBuildFailed, Description: err.Error()})
		return
	}
	var res push.Result
	jws, err := r.Signer.Sign(claims, r.SendKID)
	if err != nil {
		res = push.Result{Outcome: push.Retry, Reason: reasonSign, Cause: err}
	} else {
		if r.Limiter != nil {
			if err := r.Limiter.Wait(ctx); err != nil && ctx.Err() != nil {
				p.handBack(r, &j)
				return
			}
		}
		failing := r.failing()
		res = r.Pusher.Push(ctx, []byte(jws))
		if ctx.Err() != nil && res.Outcome != push.Delivered {
			// The grace period ran out mid-push: not the receiver's
			// fault, so neither an attempt to decide on nor a failure
			// to count.
			p.handBack(r, &j)
			return
		}
		p.observe(ctx, r, &res)
		if failing && res.Outcome != push.Delivered && res.Outcome != push.Permanent {
			// A probe of a receiver already known to be down: the
			// failure is the outage's, not this message's, so it does
			// not count towards MaxAttempts (see outage.go), neither
			// for later deliveries nor for this decision: otherwise a
			// probe on an intent's last attempt would dead-letter it.
			r.notePauseNak(j.seq)
			j.attempt = max(j.attempt-1, 1)
		}
	}

	now := p.now()
	act := Decide(res, j.attempt, now.Sub(j.stored), r.Retry, p.jitter())
	if act.Kind == NakDelay && j.last {
		// Hand-backs during outages do not count as attempts but do
		// count as deliveries; on the server's last delivery the only
		// way not to lose the message is a dead letter.
		act = Action{Kind: DeadLetter, Reason: ReasonMaxDeliveries}
	}
	switch act.Kind {
	case Ack:
		p.ack(r, &j, now)
	case NakDelay:
		p.retry(r, &j, &res, act)
	default:
		dl := queue.DeadLetter{
			Reason: act.Reason, Status: res.Status, Err: res.Err,
			Description: describe(&res), Body: res.Body,
		}
		if act.Reason != res.Reason {
			dl.LastReason = res.Reason
		}
		p.deadLetter(ctx, r, &j, dl)
	}
}

// wants reports whether r asked for this intent: its event type is one of
// r's requested types (or r requested all, private types only if it allows
// them), and the intent either names no receivers or names r.
func (r *rcv) wants(in *intent.Intent) bool {
	if r.types != nil {
		if _, ok := r.types[in.EventType]; !ok {
			return false
		}
	} else if !r.AllowPrivateTypes {
		if _, known := intent.ResolveType(in.EventType); !known {
			return false
		}
	}
	return len(in.Receivers) == 0 || slices.Contains(in.Receivers, r.Name)
}

// describe is the dead letter's description: the receiver's own, or the
// transport error when there was no answer. A redirect's Location is added:
// the dead letter has no field of its own for it, and where the receiver
// pointed is what an operator needs to fix the endpoint.
func describe(res *push.Result) string {
	d := res.Description
	if d == "" && res.Cause != nil {
		d = res.Cause.Error()
	}
	if res.Location != "" {
		loc := "redirected to " + res.Location + " (not followed)"
		if d == "" {
			return loc
		}
		return d + "; " + loc
	}
	return d
}

func (p *Pool) skip(r *rcv, j *job) {
	if err := j.msg.Ack(); err != nil {
		p.log.Warn("ack failed; the message will be redelivered", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.settled(j.seq)
	r.m.skipped.Inc()
}

func (p *Pool) ack(r *rcv, j *job, now time.Time) {
	if err := j.msg.Ack(); err != nil {
		p.log.Warn("ack failed; the message will be redelivered", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.settled(j.seq)
	r.m.delivered.Inc()
	r.m.attempts.Observe(float64(j.attempt))
	r.m.pubToDeliv.Observe(now.Sub(j.stored).Seconds())
	if ce := p.log.Check(zapcore.InfoLevel, "delivered"); ce != nil {
		ce.Write(
			zap.String("intent_id", j.intentID),
			zap.String("receiver", r.Name),
			zap.String("jti", set.JTI(j.intentID, r.Name, j.replayOf)),
			zap.Int("attempts", j.attempt),
			zap.Uint64("stream_seq", j.seq),
			zap.Duration("latency", now.Sub(j.stored)),
		)
	}
}

func (p *Pool) retry(r *rcv, j *job, res *push.Result, act Action) {
	if err := j.msg.NakWithDelay(act.Delay); err != nil {
		p.log.Warn("nak failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.m.retry(act.Reason)
	if ce := p.log.Check(zapcore.DebugLevel, "retrying"); ce != nil {
		ce.Write(
			zap.String("intent_id", j.intentID),
			zap.String("receiver", r.Name),
			zap.Int("attempt", j.attempt),
			zap.String("reason", act.Reason),
			zap.Int("status", res.Status),
			zap.Duration("delay", act.Delay),
		)
	}
}

// handBackIfPaused returns a message unpushed while its consumer is paused,
// to come back when the pause ends; see the notes on attempts in outage.go.
func (p *Pool) handBackIfPaused(r *rcv, j *job) bool {
	until := r.pausedUntil()
	now := p.now()
	if !now.Before(until) || j.last {
		return false
	}
	if err := j.msg.NakWithDelay(until.Sub(now)); err != nil {
		p.log.Warn("nak failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return true
	}
	r.notePauseNak(j.seq)
	r.m.retry(reasonPaused)
	return true
}

// handBack returns an unfinished message at shutdown with a plain Nak, so it
// is redelivered at once, to another process if there is one.
func (p *Pool) handBack(r *rcv, j *job) {
	if j.last {
		// JetStream would not redeliver it: record it instead, on a
		// context of its own since the work context is cancelled.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.deadLetter(ctx, r, j, queue.DeadLetter{Reason: ReasonMaxDeliveries, Description: "shutdown on the consumer's last delivery"})
		return
	}
	if err := j.msg.Nak(); err != nil {
		p.log.Debug("nak at shutdown failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
	}
}

// deadLetter stores a dead letter and waits for the stream's ack, and only
// then Terms the message. If storing fails the message is handed back with
// a delay instead: it must never be Termed without its dead letter.
func (p *Pool) deadLetter(ctx context.Context, r *rcv, j *job, dl queue.DeadLetter) {
	now := p.now()
	dl.Receiver = r.Name
	dl.Attempts = j.attempt
	dl.FirstAttempt = j.stored // attempts begin when JetStream stores the intent
	dl.LastAttempt = now
	dl.StreamSeq = j.seq
	dl.IntentID = j.intentID
	dl.Intent = j.data
	if j.replayOf != "" {
		dl.ReplayOf, _ = strconv.ParseUint(j.replayOf, 10, 64)
	}
	err := p.storeDeadLetter(ctx, j, &dl)
	if err != nil && j.last && ctx.Err() == nil {
		// JetStream will not deliver this message again (MaxDeliver), so
		// a Nak would strand it unseen in the stream. Keep trying in place
		// while the beat keeps the message ours: the dead-letter stream
		// is back within seconds after a leader election or a restart.
		p.log.Warn("storing a dead letter failed on the message's last delivery; retrying until it is stored",
			zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.String("reason", dl.Reason), zap.Error(err))
		for delay := lastDeliveryRetry; err != nil && waitOrDone(ctx, delay); delay = min(2*delay, deadLetterRetry) {
			err = p.storeDeadLetter(ctx, j, &dl)
		}
	}
	if err != nil {
		if ctx.Err() != nil && !j.last {
			p.handBack(r, j)
			return
		}
		if j.last {
			p.log.Error("dead letter not stored on the message's last delivery; JetStream will not redeliver it, so it stays in the intents stream at this sequence until an operator recovers it",
				zap.String("receiver", r.Name), zap.String("consumer", r.consumer), zap.Uint64("stream_seq", j.seq), zap.String("reason", dl.Reason), zap.Error(err))
		} else {
			p.log.Warn("storing a dead letter failed; the message will come back", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.String("reason", dl.Reason), zap.Error(err))
		}
		_ = j.msg.NakWithDelay(deadLetterRetry)
		return
	}
	if err := j.msg.TermWithReason(dl.Reason); err != nil {
		// The dead letter is stored; a redelivery would publish it again,
		// and the DLQ's duplicate window absorbs that.
		p.log.Warn("term after dead-lettering failed", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
	}
	r.settled(j.seq)
	r.m.deadLetter(dl.Reason)
	p.log.Info("dead-lettered",
		zap.String("intent_id", j.intentID),
		zap.String("receiver", r.Name),
		zap.String("jti", jtiOf(j, r)),
		zap.String("reason", dl.Reason),
		zap.Int("status", dl.Status),
		zap.String("err", dl.Err),
		zap.String("description", dl.Description),
		zap.Int("attempts", j.attempt),
		zap.Uint64("stream_seq", j.seq),
		zap.Duration("latency", now.Sub(j.stored)),
	)
}

// storeDeadLetter publishes dl and waits for the stream's ack. An intent
// too large to be kept in its dead letter is dropped from it (dl is updated)
// and the dead letter published again without it.
func (p *Pool) storeDeadLetter(ctx context.Context, j *job, dl *queue.DeadLetter) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if tp := j.msg.Headers().Get(queue.HeaderTraceparent); tp != "" {
		dctx = queue.WithTraceparent(dctx, tp)
	}
	err := queue.PublishDeadLetter(dctx, p.js, *dl)
	if errors.Is(err, nats.ErrMaxPayload) && len(dl.Intent) > 0 {
		// The intent fits in a NATS message but not once wrapped in its
		// dead letter (base64 adds a third). Only an oversized, hence
		// invalid, intent can be that large, so replaying its bytes could
		// never succeed; without this it would be redelivered forever.
		// Keep the record, and a prefix to find the producer by.
		dl.Description += fmt.Sprintf(" (the %d intent bytes are not kept: too large for a dead letter; they start %s)",
			len(dl.Intent), push.Excerpt(dl.Intent, intentPrefix))
		dl.Intent = nil
		err = queue.PublishDeadLetter(dctx, p.js, *dl)
	}
	return err
}

// waitOrDone waits for d and reports whether ctx is still live.
func waitOrDone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func jtiOf(j *job, r *rcv) string {
	if j.intentID == "" {
		return ""
	}
	return set.JTI(j.intentID, r.Name, j.replayOf)
}

// beat sends InProgress every AckWait/3 while a message is being worked on,
// so a slow push (or a long rate-limit wait) does not let AckWait expire
// and the message be delivered to a second worker at the same time.
type beat struct {
	mu      sync.Mutex
	msg     jetstream.Msg
	every   time.Duration
	t       *time.Timer
	stopped bool
}

func startBeat(msg jetstream.Msg, every time.Duration) *beat {
	b := &beat{msg: msg, every: every}
	b.mu.Lock()
	b.t = time.AfterFunc(every, b.fire)
	b.mu.Unlock()
	return b
}

func (b *beat) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stopped {
		return
	}
	_ = b.msg.InProgress() // best effort: failing, the message is redelivered
	b.t.Reset(b.every)
}

func (b *beat) stop() {
	b.mu.Lock()
	b.stopped = true
	b.t.Stop()
	b.mu.Unlock()
}
