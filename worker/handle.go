package worker

import (
	"context"
	"encoding/json"
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
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/tracing"
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

// deadLetterRetry is the first delay before a message whose dead letter
// could not be stored comes back (it grows with each delivery). It must not
// be Termed: that would lose it.
const deadLetterRetry = 5 * time.Second

// lastDeliveryRetry is the first pause before storing a dead letter again
// on a message's last delivery, which cannot be handed back; it doubles up
// to deadLetterRetry.
const lastDeliveryRetry = 100 * time.Millisecond

// job is what handle knows about one message.
type job struct {
	msg      jetstream.Msg
	seq      uint64
	stored   time.Time
	start    time.Time
	intentID string
	replayOf string
	data     []byte
	// detail and problems explain an invalid intent or a panic in its
	// dead letter.
	detail   string
	problems []string
	// trace is the attempt's span; nil when tracing is off (trace.go).
	trace *attemptTrace
	// holdKey is the intent's subject key (intent.SubjectKey) when its
	// receiver holds subjects on a dead letter (hold.go); dlqSeq is the
	// sequence of its stored dead letter.
	holdKey []byte
	dlqSeq  uint64
	// subjectHeld is set when the intent is dead-lettered only because
	// its subject is held.
	subjectHeld bool
	// unsent is set when the ack or term could not be sent: the server
	// still counts the message pending and will deliver it again.
	unsent bool
}

// outcome is how handle left a message.
type outcome struct {
	kind ActionKind
	// pending: the server still holds the message for redelivery (a
	// retry, a hand-back, or an ack or term that could not be sent).
	// An ordered partition's owner keeps later intents about its subject
	// waiting until it comes back (ordered.go).
	pending bool
}

// handle takes one message from delivery to settlement: run the stages
// (decode, filter, build, sign, push), gathering the Facts; Settle them;
// apply the Action. ctx is the pool's work context, which outlives Run's
// context by the grace period. probe is set when the message probes a
// paused or blocked receiver. b is the calling goroutine's beat, idle on
// entry and on return. handle returns how it settled the message.
func (p *Pool) handle(ctx context.Context, r *rcv, msg jetstream.Msg, probe bool, b *beat) outcome {
	p.m.inflight.Inc()
	defer p.m.inflight.Dec()
	b.start(msg, r.beatEvery)
	defer b.stop()

	md, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing to ack and nothing to redeliver.
		p.log.Error("message without JetStream metadata", zap.String("receiver", r.Name), zap.Error(err))
		return outcome{}
	}
	j := job{msg: msg, start: p.now(), data: msg.Data(), seq: md.Sequence.Stream, stored: md.Timestamp}
	f := Facts{
		Attempt:    r.attempt(j.seq, md.NumDelivered),
		Deliveries: int(md.NumDelivered),
		Last:       r.maxDeliver > 0 && md.NumDelivered >= uint64(r.maxDeliver),
		Owner:      r.owner,
		Probe:      probe,
		Hold:       r.hold,
		Retry:      r.Retry,
	}
	ctx, j.trace = p.startAttempt(ctx, r, &j, f.Attempt)
	defer j.trace.end()
	p.runStages(ctx, r, &j, &f)
	return p.settle(ctx, r, &j, &f)
}

// runStages runs the stages until one decides the message's fate, and
// records how far it got in f.
func (p *Pool) runStages(ctx context.Context, r *rcv, j *job, f *Facts) {
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
			f.Stage, j.detail = StagePanic, fmt.Sprint(v)
		}
	}()

	// A replay addressed to another receiver (receiver consumers see
	// every subject, see queue.ConsumerConfig) is none of this one's
	// business, not even to judge it invalid.
	subj := j.msg.Subject()
	isReplay := strings.HasPrefix(subj, queue.ReplaySubjectPrefix)
	if isReplay && !queue.IsReplayFor(subj, r.Name) {
		f.Stage = StageUnwanted
		return
	}

	sp := j.trace.stage(ctx, stageDecode)
	in, err := intent.Decode(j.data, p.cfg.Intent)
	endStage(sp, failed(err, ReasonInvalidIntent))
	if err != nil {
		f.Stage, j.detail = StageInvalid, err.Error()
		var ve *intent.ValidationError
		if errors.As(err, &ve) {
			j.detail, j.problems = ve.Summary(), ve.Problems() // the list is stored once, in errors
			// The id, when it parsed and is valid, names the dead letter.
			j.intentID = ve.ID
		}
		return
	}
	j.intentID = in.ID

	if isReplay {
		// A replay is addressed to one receiver by an operator: it
		// bypasses the type and receivers filters, which let it through
		// the first time anyway. So it must be authentic (replay.go).
		if f.Stage = p.authenticReplay(ctx, r, j); f.Stage != 0 {
			return
		}
	} else if !r.wants(in) {
		if f.Owner && f.Deliveries == 1 {
			p.unknownReceivers(in)
		}
		f.Stage = StageUnwanted
		if r.owner {
			f.Stage = p.unrouted(in, j)
		}
		return
	} else {
		if f.Owner && f.Deliveries == 1 {
			p.unknownReceivers(in)
		}
		if f.Stage = p.accepts(ctx, r, j, in); f.Stage != 0 {
			return
		}
	}

	j.trace.decoded(r, j)

	// While the receiver is paused or blocked, do not even sign: hand it
	// back. A probe goes through.
	if !f.Probe {
		if st := r.state(p.now()); st == StatePaused || st == StateBlocked {
			f.Stage, f.State = StageHeld, st
			return
		}
	}

	if r.HoldOnDeadLetter {
		if f.Stage = p.checkHold(ctx, r, j, in); f.Stage != 0 {
			return
		}
	}

	in = p.acceptedExtras(r, j, in) // extra events follow r's filter too (extras.go)
	// iat is the time JetStream stored the intent, so a redelivery
	// re-signs byte-identical claims with the same jti.
	sp = j.trace.stage(ctx, stageBuild)
	claims, err := set.Build(in, r.Profile, set.Options{IssuedAt: j.stored, ReplayOf: j.replayOf})
	endStage(sp, failed(err, ReasonBuildFailed))
	if err != nil {
		f.Stage, j.detail = StageBuild, err.Error()
		return
	}
	sg, ps := r.tools()
	sp = j.trace.stage(ctx, stageSign)
	jws, err := sign(sg, claims, r.SendKID)
	endStage(sp, failed(err, reasonSign))
	if err != nil {
		f.Stage, f.Result.Cause = StageSign, err
		f.SignError = p.signFailed(r, sg, err)
		return
	}
	if r.Gate != nil {
		// The fleet's share of max_in_flight, held until the push returns
		// (this function returns right after it).
		if err := r.Gate.Acquire(ctx); err != nil {
			f.Stage = StageInterrupted
			return
		}
		defer r.Gate.Release()
	}
	if r.Limiter != nil {
		if err := r.Limiter.Wait(ctx); err != nil && ctx.Err() != nil {
			f.Stage = StageInterrupted
			return
		}
	}
	f.Probe = f.Probe || r.failing()
	f.Result = ps.Push(ctx, jws)
	if ctx.Err() != nil && f.Result.Outcome != push.Delivered {
		// The grace period ran out mid-push: not the receiver's fault, so
		// neither an attempt to decide on nor a failure to count.
		f.Stage = StageInterrupted
		return
	}
	f.Stage = StagePushed
	f.Streak, f.OthersDelivered = p.observe(ctx, r, j.seq, f.Attempt == 1, &f.Result)
}

// unrouted tells an intent no receiver of this process will send apart:
// one naming only receivers that are not configured is unknown_receiver
// (dead-lettered by the owner); one whose type no receiver asked for is
// counted and logged, at most once a minute per type.
func (p *Pool) unrouted(in *intent.Intent, j *job) Stage {
	if len(in.Receivers) > 0 {
		known := false
		for _, name := range in.Receivers {
			if p.names[name] {
				known = true
				break
			}
		}
		if !known {
			j.detail = fmt.Sprintf("receivers %q names no configured receiver (configured: %s)", in.Receivers, strings.Join(p.sortedNames, ", "))
			return StageUnknownReceiver
		}
	}
	for _, o := range p.rcvs {
		if o.wantsType(in) {
			return StageUnwanted
		}
	}
	p.m.unroutedType(in.EventType)
	if p.unroutedLog.allow(in.EventType, p.now()) {
		p.log.Warn("intent of a type no receiver requested; acknowledged without sending (logged once a minute per type)",
			zap.String("type", in.EventType), zap.String("intent_id", in.ID),
			zap.String("fix", "add the type to a receiver's events, or stop publishing it"))
	}
	return StageUnwanted
}

// unknownReceivers counts and logs each name in the intent's receivers
// that is no configured receiver. Only the owner receiver calls it, on the
// first delivery, so each intent counts once per process group (as the
// owner's other verdicts do). An intent naming only unknown receivers is
// also dead-lettered (unrouted); one naming a real receiver as well is
// delivered there, and this is the only trace of the typo.
func (p *Pool) unknownReceivers(in *intent.Intent) {
	var known []string
	for _, name := range in.Receivers {
		if p.names[name] {
			known = append(known, name)
		}
	}
	for _, name := range in.Receivers {
		if p.names[name] {
			continue
		}
		p.m.unknownReceiver(name)
		if p.unknownRcvLog.allow(name, p.now()) {
			outcome := "sent only to the configured receivers it names"
			if len(known) == 0 {
				outcome = "dead-lettered as " + ReasonUnknownReceiver
			}
			p.log.Warn("intent names a receiver that is not configured (logged once a minute per name)",
				zap.String("unknown_receiver", name), zap.String("intent_id", in.ID), zap.String("outcome", outcome),
				zap.Strings("also_names", known), zap.Strings("configured", p.sortedNames),
				zap.String("fix", "correct the name in the producer, or add the receiver to the configuration"))
		}
	}
}

// letGo hands back, through Settle like every other message, an ordered
// partition's intent this process received but never started, because it
// gives the partition up (ordered.go).
func (p *Pool) letGo(ctx context.Context, r *rcv, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	j := job{msg: msg, start: p.now(), seq: md.Sequence.Stream, stored: md.Timestamp}
	f := Facts{
		Stage:      StageReleased,
		Attempt:    r.attempt(j.seq, md.NumDelivered),
		Deliveries: int(md.NumDelivered),
		Last:       r.maxDeliver > 0 && md.NumDelivered >= uint64(r.maxDeliver),
		Owner:      r.owner,
		Hold:       r.hold,
		Retry:      r.Retry,
	}
	if f.Last {
		// Settle dead-letters it (JetStream will not deliver it again):
		// the dead letter names the intent, and under on_dead_letter:
		// hold it holds the subject like any other.
		j.data = msg.Data()
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(j.data, &v) == nil {
			j.intentID = v.ID
		}
		if r.HoldOnDeadLetter {
			j.holdKey = []byte(queue.OrderKey(j.data))
		}
	}
	p.settle(ctx, r, &j, &f)
}

// settle decides and carries out what happens to the message. Only a dead
// letter that could not be stored sends it round again, with one more
// failure in the facts: Settle then says whether to retry the store in
// place (last delivery) or hand the message back.
func (p *Pool) settle(ctx context.Context, r *rcv, j *job, f *Facts) outcome {
	f.Age = p.now().Sub(j.stored)
	if f.State == 0 {
		f.State = r.state(p.now())
	}
	f.Shutdown = ctx.Err() != nil
	f.Jitter = p.jitter()
	for {
		act := Settle(*f)
		if p.apply(ctx, r, j, f, act) {
			j.trace.settled(act)
			back := act.Kind == NakDelay || act.Kind == HandBack || act.Kind == Block
			return outcome{kind: act.Kind, pending: back || j.unsent}
		}
		f.StoreFailures++
	}
}

// apply carries out one Action. It reports false only when a dead letter
// could not be stored, so the message is still to be settled.
func (p *Pool) apply(ctx context.Context, r *rcv, j *job, f *Facts, act Action) bool {
	switch act.Kind {
	case Ack:
		p.ack(r, j, f)
	case Skip:
		p.skip(r, j)
	case NakDelay:
		p.retry(r, j, f, act)
	case HandBack:
		p.handBack(r, j, act)
	case Block:
		p.block(ctx, r, act.Reason, &f.Result)
		p.handBack(r, j, act)
	default:
		return p.deadLetter(ctx, r, j, f, act)
	}
	return true
}

// wants reports whether r asked for this intent: its event type is one of
// r's requested types (or r requested all, private types only if it allows
// them), and the intent either names no receivers or names r.
func (r *rcv) wants(in *intent.Intent) bool {
	return r.wantsType(in) && (len(in.Receivers) == 0 || slices.Contains(in.Receivers, r.Name))
}

// wantsType reports whether r asked for the intent's event type.
func (r *rcv) wantsType(in *intent.Intent) bool {
	if r.types != nil {
		_, ok := r.types[in.EventType]
		return ok
	}
	if !r.AllowPrivateTypes {
		_, known := intent.ResolveType(in.EventType)
		return known
	}
	return true
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
		j.unsent = true
		r.m.settleFailed("ack")
		p.log.Warn("ack failed; the message will be redelivered", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.settled(j.seq)
	r.m.skipped.Inc()
}

func (p *Pool) ack(r *rcv, j *job, f *Facts) {
	if err := j.msg.Ack(); err != nil {
		j.unsent = true
		r.m.settleFailed("ack")
		p.log.Warn("ack failed; the message will be redelivered", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.settled(j.seq)
	r.m.delivered.Inc()
	r.recent.add(p.now())
	r.m.attempts.Observe(float64(f.Attempt))
	j.trace.observe(r.m.pubToDeliv, f.Age.Seconds()) // with the trace id as exemplar
	if ce := p.log.Check(zapcore.InfoLevel, "delivered"); ce != nil {
		ce.Write(
			zap.String("intent_id", j.intentID),
			zap.String("receiver", r.Name),
			zap.String("jti", set.JTI(j.intentID, r.Name, j.replayOf)),
			zap.Int("attempts", f.Attempt),
			zap.Uint64("stream_seq", j.seq),
			zap.Duration("latency", f.Age),
		)
	}
}

func (p *Pool) retry(r *rcv, j *job, f *Facts, act Action) {
	if err := j.msg.NakWithDelay(act.Delay); err != nil {
		r.m.settleFailed("nak")
		p.log.Warn("nak failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	r.m.retry(act.Reason)
	if ce := p.log.Check(zapcore.DebugLevel, "retrying"); ce != nil {
		ce.Write(
			zap.String("intent_id", j.intentID),
			zap.String("receiver", r.Name),
			zap.Int("attempt", f.Attempt),
			zap.String("reason", act.Reason),
			zap.Int("status", f.Result.Status),
			zap.Duration("delay", act.Delay),
		)
	}
}

// handBack returns a message without counting the delivery as an attempt
// (see the notes on attempts in outage.go): after act.Delay, or at once
// (plain Nak) at shutdown, so another process redelivers it.
func (p *Pool) handBack(r *rcv, j *job, act Action) {
	if act.Reason == ReasonDeadLetterUnstored {
		p.log.Error("dead letter not stored on the message's last delivery; JetStream will not redeliver it, so it stays in the intents stream at this sequence until an operator recovers it",
			zap.String("receiver", r.Name), zap.String("consumer", r.consumer), zap.Uint64("stream_seq", j.seq), zap.String("intent_id", j.intentID))
	}
	r.notePauseNak(j.seq)
	var err error
	if act.Delay > 0 {
		err = j.msg.NakWithDelay(act.Delay)
	} else {
		err = j.msg.Nak()
	}
	if err != nil {
		r.m.settleFailed("nak")
		p.log.Debug("nak failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return
	}
	if act.Reason != "" {
		r.m.retry(act.Reason)
	}
}

// deadLetter stores a dead letter and waits for the stream's ack, and only
// then Terms the message. It reports false, leaving the message unsettled,
// when the dead letter could not be stored: it must never be Termed
// without it.
func (p *Pool) deadLetter(ctx context.Context, r *rcv, j *job, f *Facts, act Action) bool {
	if act.Delay > 0 && !waitOrDone(ctx, act.Delay) {
		f.Shutdown = true
	}
	if ctx.Err() != nil {
		// At shutdown (the grace period is over) a dead letter still
		// gets a short bound of its own rather than none.
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		ctx = c
	}
	now := p.now()
	res := &f.Result
	dl := queue.DeadLetter{
		Reason:       act.Reason,
		Receiver:     r.Name,
		Attempts:     f.Attempt,
		FirstAttempt: j.stored, // attempts begin when JetStream stores the intent
		LastAttempt:  now,
		StreamSeq:    j.seq,
		IntentID:     j.intentID,
		Intent:       j.data,
		Description:  j.detail,
		Errors:       j.problems,
	}
	if f.Stage == StagePushed {
		dl.Status, dl.Err, dl.Description, dl.Body = res.Status, res.Err, describe(res), res.Body
		if act.Reason != res.Reason {
			dl.LastReason = res.Reason
		}
	} else if f.Stage == StageSign && res.Cause != nil {
		dl.LastReason, dl.Description = reasonSign, res.Cause.Error()
	}
	if j.replayOf != "" {
		dl.ReplayOf, _ = strconv.ParseUint(j.replayOf, 10, 64)
	}
	if err := p.storeDeadLetter(ctx, j, &dl); err != nil {
		p.log.Warn("storing a dead letter failed; it will be tried again",
			zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.String("reason", dl.Reason),
			zap.Bool("last_delivery", f.Last), zap.Error(err))
		return false
	}
	// The hold is written before the Term: a kill in between redelivers
	// the intent, whose dead letter is deduplicated and hold written then.
	if err := p.holdSubject(ctx, r, j, dl.ReplayOf); err != nil {
		p.log.Warn("recording a held subject failed; it will be tried again",
			zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return false
	}
	if err := j.msg.TermWithReason(dl.Reason); err != nil {
		j.unsent = true
		r.m.settleFailed("term")
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
		zap.Int("attempts", f.Attempt),
		zap.Uint64("stream_seq", j.seq),
		zap.Duration("latency", now.Sub(j.stored)),
	)
	return true
}

// storeDeadLetter publishes dl and waits for the stream's ack. An intent
// too large to be kept in its dead letter is dropped from it (dl is updated)
// and the dead letter published again without it.
func (p *Pool) storeDeadLetter(ctx context.Context, j *job, dl *queue.DeadLetter) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !trace.SpanContextFromContext(dctx).IsValid() {
		// Tracing off: keep the producer's trace context on the dead
		// letter all the same.
		dctx = tracing.Extract(dctx, j.msg.Headers())
	}
	seq, err := queue.StoreDeadLetter(dctx, p.js, *dl)
	if errors.Is(err, nats.ErrMaxPayload) && len(dl.Intent) > 0 {
		// The intent fits in a NATS message but not once wrapped in its
		// dead letter (base64 adds a third). Only an oversized, hence
		// invalid, intent can be that large, so replaying its bytes could
		// never succeed; without this it would be redelivered forever.
		// Keep the record, and a prefix to find the producer by.
		dl.Description += fmt.Sprintf(" (the %d intent bytes are not kept: too large for a dead letter; they start %s)",
			len(dl.Intent), push.Excerpt(dl.Intent, intentPrefix))
		dl.Intent = nil
		seq, err = queue.StoreDeadLetter(dctx, p.js, *dl)
	}
	j.dlqSeq = seq
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
//
// Each worker goroutine owns one beat and its timer for its lifetime and
// points it at each message in turn (start, stop), rather than making a
// timer and a closure for every message. A fire that was already due when
// stop ran finds no message, or, if start has already run again, sends an
// early InProgress for the next one, which is harmless: that message is
// being worked on.
type beat struct {
	mu    sync.Mutex
	msg   jetstream.Msg // nil between messages
	every time.Duration
	t     *time.Timer
}

// newBeat returns an idle beat.
func newBeat() *beat {
	b := &beat{}
	b.t = time.AfterFunc(time.Hour, b.fire)
	b.t.Stop()
	return b
}

// start beats for msg every every, until stop.
func (b *beat) start(msg jetstream.Msg, every time.Duration) {
	b.mu.Lock()
	b.msg, b.every = msg, every
	b.t.Reset(every)
	b.mu.Unlock()
}

func (b *beat) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.msg == nil {
		return
	}
	_ = b.msg.InProgress() // best effort: failing, the message is redelivered
	b.t.Reset(b.every)
}

// stop ends the beats of the current message.
func (b *beat) stop() {
	b.mu.Lock()
	b.msg = nil
	b.t.Stop()
	b.mu.Unlock()
}

// byteSigner is a Signer that can hand the compact JWS over as bytes
// (*signer.Signer can), saving a copy per SET on the way to Push.
type byteSigner interface {
	SignBytes(payload []byte, withKID bool) ([]byte, error)
}

func sign(sg Signer, claims []byte, withKID bool) ([]byte, error) {
	if bs, ok := sg.(byteSigner); ok {
		return bs.SignBytes(claims, withKID)
	}
	s, err := sg.Sign(claims, withKID)
	return []byte(s), err
}
