package worker

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/promreg"
	"github.com/setrelay/setrelay/queue"
)

// on_dead_letter: hold (Receiver.HoldOnDeadLetter), for ordered receivers.
//
// When an intent is dead-lettered, its subject is held: the dead letter's
// DLQ sequence is recorded in queue.HoldBucket before the intent is
// terminated. A later intent about a held subject is not delivered but
// dead-lettered as subject_held, and recorded behind it, so the partition
// moves on for every other subject and nothing is lost. The hold ends when
// its dead letters are replayed in order (`dlq replay`; the head's replay
// is delivered and the next becomes the head) or purged (`dlq purge`). A
// replay of a held dead letter that is not the head is held again, in its
// place, so a replay batch never delivers out of order.

// errHoldsUnavailable: the hold bucket could not be opened at start-up.
var errHoldsUnavailable = errors.New("worker: the subject hold bucket " + queue.HoldBucket + " is unavailable")

// openHolds opens the hold bucket when a receiver holds subjects. Without
// it those receivers' intents are handed back (hold_unchecked) until a
// restart: delivering them could overtake a held intent.
func (p *Pool) openHolds(ctx context.Context) {
	for _, r := range p.rcvs {
		if !r.HoldOnDeadLetter {
			continue
		}
		h, err := queue.OpenHolds(ctx, p.js)
		if err != nil {
			p.log.Error("subject hold bucket unavailable; receivers with on_dead_letter: hold deliver nothing until a restart", zap.Error(err))
			return
		}
		p.holds = h
		return
	}
}

// newHeldSubjectsGauge registers setrelay_held_subjects: how many subjects
// each receiver with on_dead_letter: hold is holding now. Alert on it: a
// held subject delivers nothing until someone replays or purges.
func newHeldSubjectsGauge(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "setrelay", Name: "held_subjects",
		Help: "Subjects an ordered receiver with on_dead_letter: hold is holding back after a dead letter (replay or purge them).",
	}, []string{"receiver"})
	if reg == nil {
		return g, nil
	}
	return promreg.Register(reg, g)
}

// countHeld refreshes r's held-subjects gauge.
func (p *Pool) countHeld(ctx context.Context, r *rcv) {
	if !r.HoldOnDeadLetter || p.holds == nil {
		return
	}
	n, err := p.holds.Count(ctx, r.Name)
	if err != nil {
		p.log.Debug("counting held subjects failed", zap.String("receiver", r.Name), zap.Error(err))
		return
	}
	p.heldSubjects.WithLabelValues(r.Name).Set(float64(n))
}

// holdRetry is how soon an intent comes back when its subject's hold
// cannot be read.
const holdRetry = 5 * time.Second

// checkHold decides whether in may be delivered to r now. It returns 0 to
// go on, StageSubjectHeld, or StageHoldUnchecked.
func (p *Pool) checkHold(ctx context.Context, r *rcv, j *job, in *intent.Intent) Stage {
	j.holdKey = intent.SubjectKey(in.Subject)
	if p.holds == nil {
		j.detail = "the subject hold bucket " + queue.HoldBucket + " is unavailable"
		return StageHoldUnchecked
	}
	hold, held, err := p.holds.Get(ctx, r.Name, j.holdKey)
	if err != nil {
		j.detail = err.Error()
		return StageHoldUnchecked
	}
	if !held {
		return 0
	}
	replay, _ := strconv.ParseUint(j.replayOf, 10, 64)
	switch i := slices.Index(hold.DeadLetters, replay); {
	case replay != 0 && i == 0:
		// The head's replay: the hold moves to the next dead letter
		// before the push. If this one fails again, its new dead letter
		// takes the head's place (holdSubject).
		if err := p.holds.Release(ctx, r.Name, j.holdKey, replay); err != nil {
			j.detail = err.Error()
			return StageHoldUnchecked
		}
		return 0
	case replay != 0 && i < 0:
		// A replay of a dead letter the hold does not know (made before
		// the hold, or the head's replay redelivered after it released
		// it): deliver it in its stored place.
		return 0
	}
	j.detail = "an earlier intent about this subject is dead-lettered (dead letter " +
		strconv.FormatUint(hold.DeadLetters[0], 10) + "); on_dead_letter: hold keeps the subject's later intents until it is replayed or purged"
	j.subjectHeld = true
	return StageSubjectHeld
}

// holdSubject records j's dead letter in its subject's hold. replayOf, for
// a replay dead-lettered again, is the dead letter it came from, whose
// place in the hold the new one takes (the head's place when it was
// released for this replay).
func (p *Pool) holdSubject(ctx context.Context, r *rcv, j *job, replayOf uint64) error {
	if !r.HoldOnDeadLetter || j.holdKey == nil || j.dlqSeq == 0 {
		return nil
	}
	if p.holds == nil {
		return errHoldsUnavailable
	}
	if err := p.holds.Add(ctx, r.Name, j.holdKey, j.dlqSeq, replayOf); err != nil {
		return err
	}
	if j.subjectHeld {
		return nil // one more behind the head: logged and counted as subject_held
	}
	p.log.Info("subject held: later intents about it are dead-lettered as subject_held until this dead letter is replayed or purged",
		zap.String("receiver", r.Name), zap.String("intent_id", j.intentID), zap.Uint64("dlq_seq", j.dlqSeq))
	return nil
}
