package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Per-subject ordering (Receiver.Partitions, issue 16).
//
// Every process runs one partitionLoop per partition consumer of an
// ordered receiver. The consumers have MaxAckPending 1, so the server
// delivers a partition's next intent only once the current one is acked
// or terminated: a Nak with delay (retry, hand-back while paused or
// blocked) keeps it pending, and an AckWait expiry after a process died
// redelivers the same intent before any later one. That is what keeps
// intents about one subject (one slot, one partition) in stored order
// across processes, retries, pauses and kills, without any state in a
// process's memory. Partitions are not assigned to processes: every
// process pulls every partition and the server gives each message to one
// of them, so a dead process's partitions are taken over by the others as
// soon as its message's AckWait runs out (its heartbeats stop).
//
// The cost: head-of-line blocking per partition. While a partition's head
// intent waits for a retry, the other subjects hashed to that partition
// wait too; with the default 256 partitions a failing subject delays about
// 1/256 of the others. A dead-lettered head releases the partition at once.

// partitionLoop pulls one partition consumer of r, one message at a time,
// and waits for each to be settled before asking for the next. It holds a
// pool slot only while a message is being worked on, never while polling,
// so hundreds of idle partitions do not starve the other receivers. It
// returns when ctx is cancelled, after its outstanding request ends.
func (p *Pool) partitionLoop(ctx context.Context, r *rcv, cons jetstream.Consumer, tasks chan<- task) {
	var errDelay time.Duration
	for ctx.Err() == nil {
		if r.blocked.Load() {
			sleep(ctx, heldPoll)
			continue
		}
		if until := r.pausedUntil(); p.now().Before(until) {
			sleep(ctx, min(until.Sub(p.now()), heldPoll))
			continue
		}
		// As in fetchLoop, the long poll is not cut short by shutdown:
		// a message delivered into an abandoned request would wait out
		// AckWait, and with MaxAckPending 1 hold up its partition.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FetchWait)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		r.m.pulls.Inc()
		if err != nil {
			cancel()
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		for msg := range batch.Messages() {
			// The slot is taken after the message arrived: waiting for
			// one is short, and the heartbeat starts in handle.
			p.acquire(context.WithoutCancel(ctx))
			r.inflight.Add(1)
			done := make(chan struct{})
			tasks <- task{r: r, msg: msg, done: done}
			<-done
		}
		cancel()
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		errDelay = 0
	}
}

// probeScan bounds the consumer info requests one probe makes.
const probeScan = 32

// probePartition picks the partition consumer an ordered receiver's probe
// pulls from: the next one, in turn, with a message it can hand out now
// (none in flight, one waiting), or the receiver consumer (slot-less
// intents) when none of the next probeScan has. Its head is probed, so the
// probe too keeps the partition's order.
func (p *Pool) probePartition(ctx context.Context, r *rcv) jetstream.Consumer {
	n := len(r.Partitions)
	start := int(r.probeNext.Add(1))
	for i := range min(n, probeScan) {
		cons := r.Partitions[(start+i)%n]
		info, err := cons.Info(ctx)
		if err != nil {
			continue
		}
		if info.NumAckPending == 0 && (info.NumPending > 0 || info.NumRedelivered > 0) {
			r.probeNext.Store(uint32((start + i) % n))
			return cons
		}
	}
	return r.Consumer
}
