package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/push"
)

// rcv is a Receiver with its run-time state.
type rcv struct {
	Receiver
	types      map[string]struct{} // nil: every type
	stream     string
	consumer   string
	beatEvery  time.Duration
	maxDeliver int // the consumer's MaxDeliver; <= 0: unlimited
	m          receiverMetrics
	recent     minuteCount // deliveries over the last minute (recent.go)
	// owner gives the intent-level verdicts (invalid intent, unknown
	// receiver, unrouted type) for the process: the receiver whose name
	// sorts first. The others skip such intents, so each is dead-lettered
	// once, not once per receiver.
	owner bool
	// hold is how long a message handed back for a paused or blocked
	// receiver waits: Pause.ProbeInterval.
	hold time.Duration
	// cur is the signer and pusher, replaced when a probe of a blocked
	// receiver re-reads its files.
	cur atomic.Pointer[tools]
	// streak counts receiver-wide RFC 8935 rejections in a row.
	streak streak
	// blocked is set while the receiver is blocked (blocked.go).
	blocked atomic.Bool
	// parts are an ordered receiver's partitions (ordered.go).
	parts []*partition
	// turn is held by the one partition of an ordered receiver that
	// starts intents now (ownPartition); capacity 1, full when free.
	turn chan struct{}
	// probeNext is where an ordered receiver's next probe starts looking
	// among its partitions (ordered.go).
	probeNext atomic.Uint32
	// probeNow wakes the probe loop.
	probeNow chan struct{}
	// published is the last state and reason put in the state gauge.
	published struct {
		sync.Mutex
		state  State
		reason string
		set    bool
	}

	// fails counts consecutive retryable push failures; any answer that
	// shows the receiver is up (delivered, or a permanent rejection)
	// resets it.
	fails atomic.Int64
	// troubled is set by any retryable failure and cleared by a delivery;
	// it keeps the delivered path free of the mutex.
	troubled atomic.Bool
	// down is set when the receiver is judged down (paused) and cleared by
	// a delivery: until then a process sends it one message at a time.
	down atomic.Bool
	// win is the sliding window of outcomes behind the down judgement.
	win window
	// pauseUntil is the end of the current pause, in Unix nanoseconds.
	pauseUntil atomic.Int64

	mu         sync.Mutex
	cooldown   time.Duration     // the next pause's length
	pausedAt   time.Time         // when this process last paused the consumer
	lastReason string            // last failure reason, to warn only on change
	pauseNaks  map[uint64]uint32 // stream seq -> deliveries handed back unpushed while paused
	suspects   map[uint64]uint64 // stream seq -> deliveredN at its first receiver-wide rejection

	blockReason  string        // why it is blocked
	blockedAt    time.Time     // since when
	probeAt      time.Time     // the next probe of a blocked receiver
	probeBackoff time.Duration // the wait after the next probe
	force        bool          // an operator asked for a probe now
	downSince    time.Time     // when the current outage pause began

	// rampFrom is when the receiver last recovered, in Unix nanoseconds
	// (0: not ramping); see rampCap.
	rampFrom atomic.Int64
	// inflight counts this receiver's messages handed to workers.
	inflight atomic.Int64
	// deliveredN counts deliveries, so that a receiver-wide rejection can
	// be told from an intent's own (othersDelivered).
	deliveredN atomic.Uint64
}

// rampCap is how many messages the receiver may have in flight in this
// process while it ramps up after a recovery: Pause.RampStart, doubled
// every second, until it reaches concurrency and the ramp ends.
func (r *rcv) rampCap(now time.Time, concurrency int) (int, bool) {
	from := r.rampFrom.Load()
	if from == 0 {
		return 0, false
	}
	steps := now.Sub(time.Unix(0, from)) / time.Second
	c := r.Pause.RampStart
	for ; steps > 0 && c < concurrency; steps-- {
		c *= 2
	}
	if c >= concurrency {
		r.rampFrom.CompareAndSwap(from, 0)
		return 0, false
	}
	return c, true
}

func (r *rcv) pausedUntil() time.Time {
	n := r.pauseUntil.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// failing reports whether the receiver was judged down and has not
// delivered since: its pushes are probes.
func (r *rcv) failing() bool {
	return r.down.Load()
}

// syncPause adopts the server's view of the pause, learnt from consumer
// info requested at asked: another process may have paused the consumer,
// or an operator resumed it. With a shared state bucket (shared), a pause
// is only ever ended by the bucket (a probe found the receiver back) or by
// its own end: a consumer seen unpaused may only be resumed for a probe.
func (r *rcv) syncPause(paused bool, asked, until time.Time, shared bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.blocked.Load() {
		// A blocked receiver's pause is the block's; its end is the
		// probe's to decide, not the server's timer.
		return
	}
	if shared && !paused {
		return
	}
	if paused {
		if until.After(r.pausedUntil()) {
			r.pauseUntil.Store(until.UnixNano())
		}
		r.m.paused.Set(1)
		return
	}
	// Only clear a pause this process made before the info request was
	// sent: a newer one may not have reached the server yet.
	if r.pausedAt.Before(asked) {
		r.pauseUntil.Store(0)
		r.m.paused.Set(0)
	}
}

// Attempts are not burned while a consumer is paused:
//
//   - A paused consumer delivers nothing, in any process, so messages
//     waiting out a nak delay are simply held by the server until the pause
//     ends; their delivery count does not move.
//   - A message this process already holds when the pause starts (in a
//     batch, or waiting on the rate limiter) is not pushed: it is handed
//     back with NakWithDelay until the pause ends, and its stream sequence
//     is remembered in pauseNaks. When it comes back, the attempt number
//     Decide sees is NumDelivered minus those hand-backs.
//   - After the pause, a failing receiver is probed with one message at a
//     time (fetchLoop). A probe that fails is the outage's doing, not the
//     message's, so it is remembered like a hand-back and not counted
//     either; MaxAge still bounds how long a message waits.
//
// pauseNaks lives in this process only. If a message handed back here is
// redelivered to another process, that process counts the hand-back as an
// attempt: at most one per pause per message, within MaxAttempts' margin,
// and the server's MaxDeliver sits above MaxAttempts as a safety net.

// maxPauseNaks bounds the hand-back memory. Entries are removed when their
// message is settled here; ones whose message went to another process would
// otherwise accumulate across many pauses.
const maxPauseNaks = 1 << 16

func (r *rcv) notePauseNak(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pauseNaks == nil || len(r.pauseNaks) >= maxPauseNaks {
		r.pauseNaks = make(map[uint64]uint32)
	}
	r.pauseNaks[seq]++
}

// attempt is the attempt number of a delivery: JetStream's delivery count
// less the deliveries this process handed back unpushed during a pause.
func (r *rcv) attempt(seq, delivered uint64) int {
	n := int(delivered)
	r.mu.Lock()
	if r.pauseNaks != nil {
		n -= int(r.pauseNaks[seq])
	}
	r.mu.Unlock()
	return max(n, 1)
}

// settled forgets a message's hand-backs once it is acked or dead-lettered.
func (r *rcv) settled(seq uint64) {
	r.mu.Lock()
	if r.pauseNaks != nil {
		delete(r.pauseNaks, seq)
	}
	if r.suspects != nil {
		delete(r.suspects, seq)
	}
	r.mu.Unlock()
}

// othersDelivered records a receiver-wide rejection (invalid_key ...) of
// message seq and reports whether the receiver has accepted other SETs
// since this message was first rejected so: then the rejection is this
// intent's own problem.
func (r *rcv) othersDelivered(seq uint64) bool {
	now := r.deliveredN.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.suspects == nil || len(r.suspects) >= maxPauseNaks {
		r.suspects = make(map[uint64]uint64)
	}
	first, seen := r.suspects[seq]
	if !seen {
		r.suspects[seq] = now
	}
	return seen && now > first
}

// observe feeds one push result into the outage detector, pausing the
// consumer when the receiver has failed Threshold times in a row, and into
// the streak of receiver-wide rejections, whose length it returns. It also
// warns, once, whenever the receiver's failure reason changes, so an
// operator sees "connection" turn into "http_503" without a log line per
// retry.
func (p *Pool) observe(ctx context.Context, r *rcv, seq uint64, fresh bool, res *push.Result) (streak int, othersDelivered bool) {
	switch res.Outcome {
	case push.Blocked:
		// Not an outage: the receiver is blocked when this is settled.
		return 0, false
	case push.Delivered, push.Permanent:
		// The receiver answered: it is up, even if it rejected this SET.
		r.fails.Store(0)
		r.win.record(p.now(), true, fresh)
		if res.Outcome == push.Permanent {
			if receiverWide(res.Reason) {
				return r.streak.note(seq, res.Reason), r.othersDelivered(seq)
			}
			r.streak.reset()
			return 0, false
		}
		r.deliveredN.Add(1)
		r.streak.reset()
		if !r.troubled.Load() || !r.troubled.CompareAndSwap(true, false) {
			return 0, false
		}
		if r.down.Load() {
			// Back after an outage, found by a push rather than a probe
			// (the pause had ended): tell the fleet, ramp up, log it.
			r.mu.Lock()
			r.lastReason = ""
			r.mu.Unlock()
			p.recovered(ctx, r, true)
			return 0, false
		}
		// A delivery after a few failures: the receiver is degraded at
		// worst, which is not worth a log line per failure.
		p.publishState(r)
		return 0, false
	}
	r.troubled.Store(true)
	n := r.fails.Add(1)
	now := p.now()
	r.win.record(now, false, fresh)
	r.mu.Lock()
	changed := r.lastReason != res.Reason
	r.lastReason = res.Reason
	r.mu.Unlock()
	if changed {
		p.publishState(r)
	}
	// Once a minute per reason: a degraded receiver fails now and then for
	// varying reasons, and each would otherwise be a line.
	if changed && p.failingLog.allow(r.Name+"\x00"+res.Reason, now) {
		p.log.Warn("receiver failing (logged once a minute per reason)",
			zap.String("receiver", r.Name),
			zap.String("reason", res.Reason),
			zap.Int("status", res.Status),
			zap.String("err", res.Err),
			zap.String("description", res.Description),
			zap.NamedError("cause", res.Cause))
	}
	if r.Pause.Threshold > 0 && n >= int64(r.Pause.Threshold) {
		if ratio, over := r.win.ratio(now, r.Pause.MinRequests); ratio < r.Pause.MinSuccessRatio {
			p.pause(ctx, r, n, res.Reason, ratio, over)
		}
	}
	return 0, false
}

// pause pauses r's consumer on the server, for every process, unless it is
// already paused. Each pause that follows without a delivery in between is
// twice as long as the last, up to Pause.Max.
func (p *Pool) pause(ctx context.Context, r *rcv, fails int64, reason string, ratio float64, over int) {
	now := p.now()
	r.mu.Lock()
	if now.Before(r.pausedUntil()) {
		r.mu.Unlock()
		return
	}
	cool := r.cooldown
	until := now.Add(cool)
	r.cooldown = min(2*cool, r.Pause.Max)
	r.pausedAt = now
	r.pauseUntil.Store(until.UnixNano())
	r.down.Store(true)
	if r.downSince.IsZero() {
		r.downSince = now
	}
	since := r.downSince
	r.probeAt = now.Add(r.Pause.ProbeInterval)
	r.mu.Unlock()
	r.wakeProbe()

	r.m.pauses.Inc()
	r.m.paused.Set(1)
	p.publishState(r)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p.putState(pctx, r, stateRecord{State: StatePaused.String(), Reason: reason, Since: since, Until: until})
	if _, err := p.js.PauseConsumer(pctx, r.stream, r.consumer, until); err != nil {
		// This process still holds back for the cool-down; other
		// processes find out from the state bucket or their own failures.
		p.log.Warn("pausing consumer failed; holding back in this process only",
			zap.String("receiver", r.Name), zap.String("consumer", r.consumer), zap.Error(err))
		return
	}
	p.log.Warn("receiver down: consumer paused",
		zap.String("receiver", r.Name),
		zap.String("consumer", r.consumer),
		zap.Int64("consecutive_failures", fails),
		zap.Float64("success_ratio", ratio),
		zap.Int("ratio_over", over),
		zap.String("reason", reason),
		zap.Duration("cool_down", cool),
		zap.Time("until", until))
}
