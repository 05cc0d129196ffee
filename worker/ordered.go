package worker

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

// Per-subject ordering (Receiver.Partitions, issue 16).
//
// Each partition consumer of an ordered receiver is pinned by the server to
// one puller at a time (queue.PartitionGroup): every process pulls every
// partition, and the server delivers a partition's intents only to the
// process it pinned, up to queue.PartitionMaxAckPending in flight. That
// process, the partition's owner, keeps the intents it received in memory,
// grouped by subject key, and starts an intent only when no earlier intent
// about the same subject can still be outstanding:
//
//   - Within the owner, only a subject's oldest intent (lowest stream
//     sequence) runs; the later ones wait, heartbeating so that their
//     AckWait does not run out.
//   - An intent the owner hands back to the server (a retry with delay, a
//     hand-back while paused or blocked, an ack that could not be sent)
//     stays its subject's head while it is away: the subject's later
//     intents wait for it to come back and settle. Other subjects go on.
//     That is head-of-line blocking per subject, not per partition, as
//     long as the partition's window has room.
//   - When a partition is pinned to this process (at start, or when it
//     takes over from a process that died or stopped pulling), intents
//     may still be pending elsewhere: the old owner's, redelivered only
//     when their AckWait runs out, or retries it handed back. Nothing of
//     the partition starts until the consumer's count of pending intents
//     (NumAckPending) is no more than what this process holds; then every
//     pending intent is here, and each subject starts from its oldest.
//   - A process that loses the pin (another one was pinned after it
//     stopped pulling for queue.PartitionPinnedTTL) or shuts down hands
//     back, at once, the intents it had not started (StageReleased); what
//     it had started settles as usual. The next owner waits for all of them
//     (previous point).
//
// So the order lives on the server, in the consumer's pending list and the
// stream's sequence, and each owner only ever reorders what it holds.

// pinIDHeader carries, on every message of a pinned consumer, the id of
// the pin it was delivered under.
const pinIDHeader = "Nats-Pin-Id"

// offSlot tells of an intent a producer published on another slot than
// its subject's (queue.OnItsSlot): it is delivered, but ordered within
// the wrong partition, so it may overtake or trail its subject's other
// intents. Nothing else would show that a producer computes slots wrongly.
func (p *Pool) offSlot(r *rcv, subject string) {
	p.m.offSlot.WithLabelValues(r.Name).Inc()
	if p.offSlotLog.allow(r.Name, p.now()) {
		p.log.Warn("intent published on another slot than its subject's: delivered without its order guarantee (logged once a minute per receiver)",
			zap.String("receiver", r.Name), zap.String("nats_subject", subject),
			zap.String("fix", "publish with queue.Publisher, `setrelay publish` or the slot subject rule in the README (Per-subject ordering)"))
	}
}

// pinOf is the pin id the server delivered a message under. The server
// appends its Nats-Pin-Id after the headers the producer stored, which may
// include one of the producer's own, so it is the last value; the first
// would let any producer steer which pin the owner believes it holds.
func pinOf(h nats.Header) string {
	v := h[pinIDHeader]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// partition is one partition consumer of an ordered receiver, as this
// process sees it. Its loop (ownPartition) owns everything else.
type partition struct {
	cons jetstream.Consumer
	// take is how a probe asks the partition's loop for an intent it may
	// push now.
	take chan chan<- taken
}

// taken is an intent handed to a probe; the probe reports its outcome on
// done.
type taken struct {
	msg  jetstream.Msg
	seq  uint64
	done chan<- settledMsg
}

// settledMsg tells a partition's loop how one of its intents was settled.
type settledMsg struct {
	seq uint64
	out outcome
}

// entry is one intent of a partition that this process holds, or handed
// back and expects back.
type entry struct {
	msg jetstream.Msg // nil while away
	key string
	// away: handed back to the server, which will deliver it again.
	away bool
	// running: handed to a worker or probe, not yet settled.
	running bool
	// orphan: started before this process gave the partition up; its
	// outcome is no longer this process's to track.
	orphan bool
	// alive is when the server last heard of it: delivered, or a
	// heartbeat sent while it waited.
	alive time.Time
}

// order is a partition owner's view of its intents: which it holds, which
// it handed back, and which it may start. Only the partition's loop uses
// it; it is a plain data structure so that the rules are tested alone.
type order struct {
	entries map[uint64]*entry
	// subjects lists, per subject key, the stream sequences of its
	// intents held or away, ascending.
	subjects map[string][]uint64
	held     int // entries with a message (running or waiting)
	away     int // entries handed back to the server
	// pin is the pin id of the last intent received; a new one means the
	// partition was (re)pinned to this process.
	pin string
	// unknown: intents of the partition may be pending elsewhere, so
	// nothing starts (see reconcile).
	unknown bool
	// dseq is the consumer's delivery sequence of the last intent
	// received. While one pin lasts every delivery comes here, so a gap is
	// a delivery lost on the way (into a pull request the client had
	// already given up): that intent is pending but not here.
	dseq uint64
	// first is the delivery sequence of the first intent received under
	// this pin, and gap is set once a delivery under it went missing (see
	// reconcile).
	first uint64
	gap   bool
}

func newOrder() *order {
	return &order{entries: map[uint64]*entry{}, subjects: map[string][]uint64{}}
}

// add records a delivered intent (stream sequence seq, consumer delivery
// sequence dseq). A new pin id means this process was just pinned: what it
// handed back before may have been settled by another owner since, so it
// forgets it, and it starts nothing until reconcile; nor after a gap in
// the deliveries.
func (o *order) add(msg jetstream.Msg, seq, dseq uint64, key, pin string, now time.Time) {
	switch {
	case pin != o.pin:
		o.pin, o.first, o.gap = pin, dseq, false
		o.unknown = true
		o.forgetAway()
	case dseq != o.dseq+1:
		o.unknown, o.gap = true, true
	}
	o.dseq = dseq
	if e, ok := o.entries[seq]; ok {
		switch {
		case e.running:
			// A redelivery of an intent being worked on (its AckWait ran
			// out meanwhile): the running one settles it.
		case e.away:
			e.msg, e.away, e.alive = msg, false, now // back from the server
			o.away--
			o.held++
		default:
			e.msg, e.alive = msg, now // the newer delivery is the one to settle
		}
		return
	}
	o.entries[seq] = &entry{msg: msg, key: key, alive: now}
	o.held++
	seqs := o.subjects[key]
	i, _ := slices.BinarySearch(seqs, seq)
	o.subjects[key] = slices.Insert(seqs, i, seq)
}

// next is the intent to start now: the oldest among the subjects whose
// oldest intent is here and not running; nil when there is none, or while
// the partition may have intents pending elsewhere.
func (o *order) next() (*entry, uint64) {
	if o.unknown {
		return nil, 0
	}
	var best *entry
	var bestSeq uint64
	for _, seqs := range o.subjects {
		e := o.entries[seqs[0]]
		if e.away || e.running {
			continue
		}
		if best == nil || seqs[0] < bestSeq {
			best, bestSeq = e, seqs[0]
		}
	}
	return best, bestSeq
}

// done records how a started intent was settled: still pending on the
// server (it stays its subject's head, away) or gone.
func (o *order) done(seq uint64, pending bool) {
	e, ok := o.entries[seq]
	if !ok || !e.running {
		return
	}
	e.running = false
	if pending && !e.orphan {
		e.msg, e.away = nil, true
		o.held--
		o.away++
		return
	}
	o.remove(seq, e)
}

func (o *order) remove(seq uint64, e *entry) {
	delete(o.entries, seq)
	if e.away {
		o.away--
	} else {
		o.held--
	}
	seqs := o.subjects[e.key]
	if i, found := slices.BinarySearch(seqs, seq); found {
		seqs = slices.Delete(seqs, i, i+1)
	}
	if len(seqs) == 0 {
		delete(o.subjects, e.key)
	} else {
		o.subjects[e.key] = seqs
	}
}

// forgetAway drops the intents handed back to the server.
func (o *order) forgetAway() {
	for seq, e := range o.entries {
		if e.away {
			o.remove(seq, e)
		}
	}
}

// waiting lists the intents held and not started.
func (o *order) waiting() []jetstream.Msg {
	var out []jetstream.Msg
	for _, e := range o.entries {
		if !e.away && !e.running {
			out = append(out, e.msg)
		}
	}
	return out
}

// stale lists the waiting intents the server last heard of before since,
// and marks them heard of at now: the ones to heartbeat.
func (o *order) stale(since, now time.Time) []jetstream.Msg {
	var out []jetstream.Msg
	for _, e := range o.entries {
		if !e.away && !e.running && e.alive.Before(since) {
			out = append(out, e.msg)
			e.alive = now
		}
	}
	return out
}

// release gives the partition up: it returns the intents not started, for
// handing back, and forgets everything but the running ones, whose
// outcomes it will ignore.
func (o *order) release() []jetstream.Msg {
	out := o.waiting()
	for seq, e := range o.entries {
		if e.running {
			e.orphan = true
			continue
		}
		o.remove(seq, e)
	}
	o.pin = ""
	o.unknown = true
	return out
}

// reconcile ends the wait after a pin (or a lost delivery) once no
// earlier intent of the partition can be pending elsewhere. info was asked
// after the intents held now were received; that it is older only makes
// either test stricter. Either suffices:
//
//   - Every delivery before the first one under this pin is acked
//     (AckFloor), and none under it went missing: whatever is pending was
//     delivered here, so it is held or was handed back from here. A
//     redelivery gets a new delivery sequence, so the old owner's
//     unsettled intents hold the floor down until they come back here.
//     This lets a new owner start while the server is still delivering.
//   - The consumer's pending count is no more than what this process holds
//     or handed back itself.
func (o *order) reconcile(numAckPending int, ackFloor uint64) {
	if !o.unknown || o.pin == "" {
		return
	}
	if (!o.gap && ackFloor+1 >= o.first) || numAckPending <= o.held+o.away {
		o.unknown, o.gap = false, false
	}
}

// reconcileRetry bounds how often a partition just pinned here asks the
// server whether intents are still pending elsewhere.
const (
	reconcileFirst = 20 * time.Millisecond
	reconcileMax   = time.Second
)

// turnBurst is how long after taking its turn a partition keeps starting
// what becomes startable without waiting for the next turn (ownPartition).
// It is the server's interval between two writes of a consumer's state
// (100 ms): the state changes of such starts fall in the writes the turn
// costs anyway, the one 100 ms after its first change and the one after
// that. `setrelay bench --ordering` measured 40 ms to 250 ms: from 100 ms on,
// each partition needed about one turn instead of three, a third fewer
// writes, and 40 ms did half as well.
const turnBurst = 100 * time.Millisecond

// ownPartition pulls partition pt of r and, while the server pins it to
// this process, works on its intents in per-subject order (see the
// comment at the top of this file). It returns when ctx is cancelled,
// after its outstanding pull ended and the intents it had not started
// were handed back; started ones settle on their workers.
func (p *Pool) ownPartition(ctx, work context.Context, r *rcv, pt *partition, tasks chan<- task) {
	msgs := make(chan jetstream.Msg, queue.PartitionMaxAckPending)
	lost := make(chan struct{}, 1)
	pulled := make(chan struct{})
	go func() {
		defer close(pulled)
		p.pullPartition(ctx, r, pt, msgs, lost)
	}()
	// Workers never wait to report: each held intent runs at most once
	// at a time, and this process holds at most two windows (its own and
	// the orphans of one it gave up).
	settled := make(chan settledMsg, 4*queue.PartitionMaxAckPending)
	o := newOrder()
	// Waiting intents are heartbeated once they have waited half a beat
	// interval, so the server hears of each at least every beatEvery (a
	// third of AckWait), and one that waits briefly costs nothing: each
	// heartbeat is a change of the consumer's state, which the server
	// writes to disk.
	beat := time.NewTicker(r.beatEvery / 2)
	defer beat.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	retry := reconcileFirst
	wake := time.NewTicker(heldPoll)
	defer wake.Stop()

	// The partitions of a receiver take turns to start intents (r.turn):
	// the one holding the turn starts what it may, up to a window, and
	// passes it on. The server rewrites a consumer's state file after a
	// change, at most every 100 ms, so a partition whose intents are
	// started together, and so settle (and its window refills) together,
	// costs about three writes per window (at the first change, 100 ms
	// later, and once more for what came in meanwhile) instead of ten a
	// second: with 256 partitions those writes were the largest cost of
	// ordered delivery. A startable intent waits for its partition's turn
	// at most one round of the receiver's partitions that have work, and
	// is heartbeated meanwhile like any waiting intent.
	var turn <-chan struct{}
	hasTurn, started := false, 0
	//
	// For turnBurst after it took the turn, the partition also starts,
	// without the turn, whatever becomes startable meanwhile: a subject's
	// next intent once its head settled, or what the server delivered for
	// the acks. Their state changes fall in the writes the turn costs
	// anyway. Without that, a subject's next intent waited a whole round
	// for a turn of its own, and most turns started only a few intents
	// (`setrelay bench --ordering`: ~800 turns for 20,000 SETs, ~280 with).
	var burstUntil time.Time
	burstEnd := time.NewTimer(time.Hour)
	burstEnd.Stop()
	defer burstEnd.Stop()
	passTurn := func() {
		if hasTurn {
			hasTurn, started = false, 0
			r.turn <- struct{}{}
		}
	}
	defer passTurn()

	for {
		var sem chan struct{}
		var held <-chan time.Time
		turn = nil
		if e, _ := o.next(); e != nil {
			switch {
			case r.blocked.Load() || p.now().Before(r.pausedUntil()):
				passTurn()
				held = wake.C // look again soon: a pause can end early
			case hasTurn || p.now().Before(burstUntil):
				sem = p.sem
			default:
				turn = r.turn
			}
		} else {
			passTurn()
		}
		select {
		case <-ctx.Done():
			passTurn()
			p.givePartitionUp(work, r, pt, o, msgs, pulled)
			return
		case <-turn:
			hasTurn = true
			burstUntil = p.now().Add(turnBurst)
			burstEnd.Reset(turnBurst)
		case <-burstEnd.C:
			// The burst is over: what is startable now waits for a turn.
		case msg := <-msgs:
			md, err := msg.Metadata()
			if err != nil {
				continue // not a JetStream message: nothing to settle
			}
			was := o.unknown
			key := queue.OrderKey(msg.Data())
			if md.NumDelivered == 1 && !queue.OnItsSlot(msg.Subject(), key) {
				p.offSlot(r, msg.Subject())
			}
			o.add(msg, md.Sequence.Stream, md.Sequence.Consumer, key, pinOf(msg.Headers()), p.now())
			if o.unknown && (!was || len(msgs) == 0) {
				// Just pinned, or the burst that came with the pin is
				// in: ask at once, then back off.
				retry = reconcileFirst
				recheck.Reset(0)
			}
		case <-recheck.C:
			if !o.unknown {
				continue
			}
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := pt.cons.Info(ictx)
			cancel()
			if err == nil {
				o.reconcile(info.NumAckPending, info.AckFloor.Consumer)
			}
			if o.unknown {
				recheck.Reset(retry)
				retry = min(2*retry, reconcileMax)
			}
		case <-lost:
			for _, msg := range o.release() {
				p.letGo(work, r, msg)
			}
		case s := <-settled:
			o.done(s.seq, s.out.pending)
		case sem <- struct{}{}:
			e, seq := o.next()
			e.running = true
			r.inflight.Add(1)
			tasks <- task{r: r, msg: e.msg, seq: seq, settled: settled}
			if hasTurn {
				if started++; started >= queue.PartitionMaxAckPending {
					passTurn() // let the others start theirs
				}
			}
		case reply := <-pt.take:
			e, seq := o.next()
			if e == nil {
				reply <- taken{}
				continue
			}
			e.running = true
			reply <- taken{msg: e.msg, seq: seq, done: settled}
		case <-beat.C:
			now := p.now()
			for _, msg := range o.stale(now.Add(-r.beatEvery/2), now) {
				_ = msg.InProgress() // best effort: failing, it is redelivered, in order
			}
		case <-held:
		}
	}
}

// givePartitionUp is ownPartition's shutdown: it waits for the last pull
// to end, hands back every intent not started, and unpins the partition if
// it was pinned here, so that another process takes it over at once rather
// than after queue.PartitionPinnedTTL.
func (p *Pool) givePartitionUp(work context.Context, r *rcv, pt *partition, o *order, msgs <-chan jetstream.Msg, pulled <-chan struct{}) {
	for done := false; !done; {
		select {
		case msg := <-msgs:
			p.letGo(work, r, msg)
		case <-pulled:
			done = true
		}
	}
	for len(msgs) > 0 {
		p.letGo(work, r, <-msgs)
	}
	pinned := o.pin != ""
	for _, msg := range o.release() {
		p.letGo(work, r, msg)
	}
	if !pinned {
		return
	}
	uctx, cancel := context.WithTimeout(work, 2*time.Second)
	defer cancel()
	s, err := p.js.Stream(uctx, r.stream)
	if err == nil {
		err = s.UnpinConsumer(uctx, pt.cons.CachedInfo().Name, queue.PartitionGroup)
	}
	if err != nil {
		p.log.Debug("unpinning a partition at shutdown failed; another process takes it over after the pin's TTL",
			zap.String("receiver", r.Name), zap.Error(err))
	}
}

// pullPartition keeps a pull request open on pt, in its priority group, so
// that the server can pin the partition here and keeps it pinned, and
// forwards what it delivers. A request asks for a whole window; the server
// sends no more than the consumer's MaxAckPending allows. It reports on
// lost when the server answers that the partition is pinned elsewhere. It
// returns when ctx is cancelled, after its outstanding request ends.
func (p *Pool) pullPartition(ctx context.Context, r *rcv, pt *partition, msgs chan<- jetstream.Msg, lost chan<- struct{}) {
	var errDelay time.Duration
	for ctx.Err() == nil {
		// The request's expiry is the server's, and the client waits for
		// the server's end-of-request status (then a second more): a
		// client-side deadline could abandon the request while the server
		// still delivers into it, and that intent would be lost until its
		// AckWait ran out (order.add notices the gap). Nor is it cut short
		// by shutdown, for the same reason.
		batch, err := pt.cons.Fetch(queue.PartitionMaxAckPending, jetstream.FetchMaxWait(min(p.cfg.FetchWait, queue.PartitionPinnedTTL/4)),
			jetstream.FetchPriorityGroup(queue.PartitionGroup))
		r.m.pulls.Inc()
		if err != nil {
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		for msg := range batch.Messages() {
			msgs <- msg
		}
		err = batch.Error()
		switch {
		case errors.Is(err, jetstream.ErrPinIDMismatch):
			select {
			case lost <- struct{}{}:
			default:
			}
		case err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		errDelay = 0
	}
}

// probePartitioned takes, for a probe of an ordered receiver, an intent
// one of this process's partitions may start now, trying them in turn from
// where the last probe stopped. It returns false when none has one.
func (p *Pool) probePartitioned(ctx context.Context, r *rcv) (taken, bool) {
	n := len(r.parts)
	start := int(r.probeNext.Add(1))
	for i := range n {
		pt := r.parts[(start+i)%n]
		reply := make(chan taken, 1)
		select {
		case pt.take <- reply:
		case <-ctx.Done():
			return taken{}, false
		}
		if t := <-reply; t.msg != nil {
			r.probeNext.Store(uint32((start + i) % n))
			return t, true
		}
	}
	return taken{}, false
}
