package worker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/tracing"
)

// Pool serves every configured receiver's consumer with one shared set of
// Concurrency slots. Build it with New and run it with Run.
type Pool struct {
	cfg    Config
	js     jetstream.JetStream
	log    *zap.Logger
	now    func() time.Time
	jitter func() float64
	m      *metrics
	rcvs   []*rcv
	// replayKeys checks that replays are what `dlq replay` made (replay.go).
	replayKeys *queue.ReplayKeys

	// sem holds one token per message being worked on. A fetch loop takes
	// a token before it asks the server for a message, so the process never
	// holds more unsettled messages than Concurrency, and a message is
	// never pulled before there is a goroutine free to start on it.
	sem chan struct{}
	// share caps one pull request's batch, so one busy receiver cannot
	// take every free slot in a single request.
	share int

	// names are the configured receivers, for unknown_receiver.
	names       map[string]bool
	sortedNames []string
	// unroutedLog limits the unrouted-type warning to one per type a
	// minute.
	unroutedLog rateLimit
	// unknownRcvLog limits the unknown-receiver warning to one per name a
	// minute.
	unknownRcvLog rateLimit
	// offSlotLog limits the off-slot warning to one per receiver a minute.
	offSlotLog rateLimit
	// failingLog limits the failing-receiver and signing warnings to one
	// per receiver and reason a minute.
	failingLog rateLimit
	// procID names this process as a probe-lease holder.
	procID string
	// holds is the subject hold bucket (hold.go); nil unless a receiver
	// has on_dead_letter: hold.
	holds *queue.Holds
	// heldSubjects is setrelay_held_subjects{receiver}, set by pollInfo.
	heldSubjects *prometheus.GaugeVec
	// fleet is the shared state bucket; nil until Run opens it, or when it
	// is unavailable.
	fleet *fleet
	// tracer is nil when tracing is off.
	tracer trace.Tracer
}

// New checks cfg and builds a Pool. It does not touch the network.
func New(cfg Config, d Deps) (*Pool, error) {
	if d.JS == nil {
		return nil, errors.New("worker: Deps.JS is required (dead letters and pauses)")
	}
	if len(cfg.Receivers) == 0 {
		return nil, errors.New("worker: no receivers")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.GracePeriod == 0 {
		cfg.GracePeriod = DefaultGracePeriod
	}
	if cfg.GracePeriod < 0 {
		cfg.GracePeriod = 0
	}
	if cfg.FetchWait <= 0 {
		cfg.FetchWait = DefaultFetchWait
	}
	if cfg.InfoInterval <= 0 {
		cfg.InfoInterval = DefaultInfoInterval
	}
	p := &Pool{cfg: cfg, js: d.JS, log: d.Log, now: d.Now, jitter: d.Jitter, replayKeys: queue.NewReplayKeys(d.JS)}
	if d.Tracer != nil {
		p.tracer = d.Tracer.Tracer(tracing.ScopeName)
	}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.jitter == nil {
		p.jitter = rand.Float64
	}
	m, err := newMetrics(d.Registerer, p.now)
	if err != nil {
		return nil, fmt.Errorf("worker: registering metrics: %w", err)
	}
	p.m = m
	if p.heldSubjects, err = newHeldSubjectsGauge(d.Registerer); err != nil {
		return nil, fmt.Errorf("worker: registering metrics: %w", err)
	}
	seen := make(map[string]bool, len(cfg.Receivers))
	for i := range cfg.Receivers {
		r, err := p.newRcv(cfg.Receivers[i])
		if err != nil {
			return nil, fmt.Errorf("worker: receivers[%d] %q: %w", i, cfg.Receivers[i].Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("worker: receivers[%d]: duplicate name %q", i, r.Name)
		}
		seen[r.Name] = true
		p.rcvs = append(p.rcvs, r)
	}
	p.sem = make(chan struct{}, cfg.Concurrency)
	p.share = max(1, cfg.Concurrency/len(p.rcvs))
	p.names = seen
	for name := range seen {
		p.sortedNames = append(p.sortedNames, name)
	}
	slices.Sort(p.sortedNames)
	for _, r := range p.rcvs {
		// The first name in order is the same in every process with the
		// same receivers; see Facts.Owner.
		r.owner = r.Name == p.sortedNames[0]
	}
	if err := registerRecent(d.Registerer, newRecentCollector(p.rcvs, p.now)); err != nil {
		return nil, fmt.Errorf("worker: registering metrics: %w", err)
	}
	p.unroutedLog.every = time.Minute
	p.unknownRcvLog.every = time.Minute
	p.offSlotLog.every = time.Minute
	p.failingLog.every = time.Minute
	p.procID = fmt.Sprintf("%s-%d-%08x", hostname(), os.Getpid(), rand.Uint32())
	return p, nil
}

func (p *Pool) newRcv(spec Receiver) (*rcv, error) {
	switch {
	case spec.Name == "":
		return nil, errors.New("name is required")
	case spec.Consumer == nil:
		return nil, errors.New("consumer is required")
	case spec.Signer == nil:
		return nil, errors.New("signer is required")
	case spec.Pusher == nil:
		return nil, errors.New("pusher is required")
	}
	info := spec.Consumer.CachedInfo()
	if info == nil {
		return nil, errors.New("consumer has no cached info")
	}
	r := &rcv{
		Receiver: spec,
		stream:   info.Stream,
		consumer: info.Name,
		m:        p.m.forReceiver(spec.Name),
	}
	r.Retry = r.Retry.WithDefaults()
	r.Pause = r.Pause.withDefaults()
	r.cooldown = r.Pause.Initial
	r.hold = r.Pause.ProbeInterval
	r.win.span = r.Pause.Window
	r.probeNow = make(chan struct{}, 1)
	for _, cons := range spec.Partitions {
		r.parts = append(r.parts, &partition{cons: cons, take: make(chan chan<- taken)})
		if r.turn == nil {
			r.turn = make(chan struct{}, 1)
			r.turn <- struct{}{}
		}
	}
	r.cur.Store(&tools{sg: spec.Signer, ps: spec.Pusher})
	if len(spec.Types) > 0 {
		r.types = make(map[string]struct{}, len(spec.Types))
		for _, t := range spec.Types {
			uri, _ := intent.ResolveType(t)
			if uri == "" {
				return nil, fmt.Errorf("event type %q: not an alias or absolute URI", t)
			}
			r.types[uri] = struct{}{}
		}
	}
	ackWait := p.cfg.AckWait
	if ackWait <= 0 {
		ackWait = info.Config.AckWait
	}
	if ackWait <= 0 {
		ackWait = queue.DefaultAckWait
	}
	r.beatEvery = ackWait / 3
	r.maxDeliver = info.Config.MaxDeliver
	return r, nil
}

// Run serves the consumers until ctx is cancelled, then shuts down:
//
//  1. Stop pulling: every fetch loop sends no more pull requests and
//     returns once its outstanding one ends (at most FetchWait); messages
//     it brings are worked on like the others.
//  2. Let in-flight messages finish for up to GracePeriod. They run on a
//     context that is not derived from ctx, so cancelling ctx does not
//     abort a push half-way.
//  3. When the grace period runs out, cancel what is left; each such
//     message is handed back with a plain Nak, so another process (or this
//     one, restarted) redelivers it at once.
//
// Run returns nil after a shutdown. Draining or closing the NATS connection
// is the caller's job, after Run returns: the last acks and naks are
// published on it, and Drain flushes them.
func (p *Pool) Run(ctx context.Context) error {
	// work outlives ctx by at most the grace period.
	work, abort := context.WithCancel(context.WithoutCancel(ctx))
	defer abort()

	// Concurrency long-lived workers, rather than a goroutine per message:
	// signing and HTTP need deep stacks, and growing a fresh goroutine's
	// stack for every message cost measurable CPU.
	tasks := make(chan task)
	var workers sync.WaitGroup
	for i := 0; i < p.cfg.Concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			b := newBeat()
			for t := range tasks {
				out := p.handle(work, t.r, t.msg, false, b)
				t.r.inflight.Add(-1)
				p.release(1)
				if t.done != nil {
					close(t.done)
				}
				if t.settled != nil {
					t.settled <- settledMsg{seq: t.seq, out: out}
				}
			}
		}()
	}

	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	p.openFleet(fctx)
	p.openHolds(fctx)
	fcancel()
	for _, r := range p.rcvs {
		p.publishState(r)
	}

	var loops sync.WaitGroup
	for _, r := range p.rcvs {
		loops.Add(2)
		go func() {
			defer loops.Done()
			p.fetchLoop(ctx, r, tasks)
		}()
		go func() {
			defer loops.Done()
			p.probeLoop(ctx, work, r)
		}()
		for _, pt := range r.parts {
			loops.Add(1)
			go func() {
				defer loops.Done()
				p.ownPartition(ctx, work, r, pt, tasks)
			}()
		}
	}
	loops.Add(1)
	go func() {
		defer loops.Done()
		p.watchFleet(ctx)
	}()
	loops.Add(1)
	go func() {
		defer loops.Done()
		p.pollInfo(ctx)
	}()
	p.log.Info("worker pool started", zap.Int("concurrency", p.cfg.Concurrency), zap.Int("receivers", len(p.rcvs)))

	<-ctx.Done()
	// The fetch loops are the only senders on tasks: once they are done,
	// closing it lets each worker return after its current message.
	loops.Wait()
	close(tasks)
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	grace := time.NewTimer(p.cfg.GracePeriod)
	defer grace.Stop()
	select {
	case <-done:
		p.log.Info("worker pool stopped; in-flight messages finished")
	case <-grace.C:
		abort()
		<-done // handlers see work cancelled, Nak and return promptly
		p.log.Warn("worker pool stopped; grace period over, unfinished messages handed back", zap.Duration("grace_period", p.cfg.GracePeriod))
	}
	return nil
}

// task is one message handed from a fetch loop to a worker, which owns one
// slot for it. done, when set, is closed after the message is settled;
// settled, when set, is told how (an ordered partition's intent, seq).
type task struct {
	r       *rcv
	msg     jetstream.Msg
	done    chan struct{}
	seq     uint64
	settled chan<- settledMsg
}

func (p *Pool) acquire(ctx context.Context) bool {
	select {
	case p.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// tryAcquire takes up to n more free slots without waiting. A fetch loop
// blocked in acquire is queued on the channel ahead of any tryAcquire, so a
// busy receiver cannot starve a quiet one.
func (p *Pool) tryAcquire(n int) int {
	got := 0
	for ; got < n; got++ {
		select {
		case p.sem <- struct{}{}:
		default:
			return got
		}
	}
	return got
}

func (p *Pool) release(n int) {
	for i := 0; i < n; i++ {
		<-p.sem
	}
}

// fetchLoop pulls r's messages, never more than the slots it holds. Each
// pull request is a long poll of up to FetchWait that asks for as many
// messages as the loop holds slots, and each message is handed to a worker
// as soon as it streams in, not when the batch completes; the slots a batch
// ended short of are released when it ends. So a backlog is drained with
// full batches that return at once, and a steady trickle costs one pull
// request per batch rather than two per message (an empty no-wait pull,
// then a long poll of one).
//
// The request size follows what the last one brought: twice as many, up
// to the receiver's fair share of the free slots, and a single slot after
// an empty one. An idle receiver so ties up one slot, not its share, and a
// busy one soon asks for all it may take.
//
// While a backlog drains (the last batch's last message had at least a
// share more pending) and the receiver has a Bulk consumer, the pulls go
// through that one instead; the messages are acked on the connection they
// came from.
//
// The loop returns when ctx is cancelled, after its outstanding request
// ends; messages that request brings are still handed to the workers.
func (p *Pool) fetchLoop(ctx context.Context, r *rcv, tasks chan<- task) {
	want := 1
	var errDelay time.Duration
	bulk := false // pull through r.Bulk: the last batch left a backlog
	for ctx.Err() == nil {
		// A paused consumer delivers nothing, so do not tie up a slot in
		// a pull request that can only time out. A blocked one is paused
		// too (its probes are probeLoop's). The wait is checked often: a
		// pause can end early (an unblock, a resume).
		if r.blocked.Load() {
			sleep(ctx, heldPoll)
			continue
		}
		if until := r.pausedUntil(); p.now().Before(until) {
			sleep(ctx, min(until.Sub(p.now()), heldPoll))
			continue
		}
		// After a recovery, concurrency ramps up (rampCap), so a backlog
		// does not hit a receiver that just came back all at once.
		limit := p.share
		if c, ramping := r.rampCap(p.now(), p.cfg.Concurrency); ramping {
			limit = min(limit, c-int(r.inflight.Load()))
			if limit <= 0 {
				sleep(ctx, rampPoll)
				continue
			}
		}
		if !p.acquire(ctx) {
			return
		}
		held := 1
		// Once a receiver is failing, send it one message at a time until
		// one gets through, so a half-recovered receiver is probed, not
		// flooded, and few attempts are spent on it.
		probing := r.failing()
		if !probing {
			held += p.tryAcquire(min(want, limit) - 1)
		}
		// The long poll is not cut short by shutdown: the server would
		// still deliver into the abandoned request, and that message would
		// wait out AckWait unseen. Shutdown waits at most FetchWait for it
		// instead, and works on what it brings.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FetchWait)
		cons := r.Consumer
		if bulk && !probing {
			cons = r.Bulk
		}
		batch, err := cons.Fetch(held, jetstream.FetchContext(fctx))
		r.m.pulls.Inc()
		if err != nil {
			cancel()
			p.release(held)
			bulk = false
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		got := 0
		var last jetstream.Msg
		for msg := range batch.Messages() {
			got++
			last = msg
			r.inflight.Add(1)
			if !probing {
				tasks <- task{r: r, msg: msg}
				continue
			}
			done := make(chan struct{})
			tasks <- task{r: r, msg: msg, done: done}
			select {
			case <-done:
			case <-ctx.Done():
			}
		}
		cancel()
		p.release(held - got)
		if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			bulk = false
			errDelay = p.fetchFailed(ctx, r, err, errDelay)
			continue
		}
		errDelay = 0
		want = max(1, 2*got)
		bulk = r.Bulk != nil && draining(last, p.share)
	}
}

// draining reports whether the consumer had at least share more messages
// pending after last, the last message of a batch: a backlog, which the next
// pull drains through the bulk connection.
func draining(last jetstream.Msg, share int) bool {
	if last == nil {
		return false
	}
	md, err := last.Metadata()
	return err == nil && md.NumPending >= uint64(share)
}

// fetchFailed logs a failed pull (the first of a run at warn) and waits
// before the next, doubling up to 5s, so a lost connection is not a busy
// loop. nats.go reconnects underneath.
func (p *Pool) fetchFailed(ctx context.Context, r *rcv, err error, prev time.Duration) time.Duration {
	if ctx.Err() != nil {
		return prev
	}
	if prev == 0 {
		p.log.Warn("pulling messages failed; retrying", zap.String("receiver", r.Name), zap.Error(err))
		prev = 50 * time.Millisecond
	} else {
		prev = min(2*prev, 5*time.Second)
	}
	sleep(ctx, prev)
	return prev
}

// pollInfo refreshes the pending, oldest-pending and paused gauges, and learns about pauses
// made by other processes, so this one does not sit in pull requests the
// server will not answer.
func (p *Pool) pollInfo(ctx context.Context) {
	t := time.NewTicker(p.cfg.InfoInterval)
	defer t.Stop()
	oldest := oldestFinder{js: p.js}
	for {
		for _, r := range p.rcvs {
			if ctx.Err() != nil {
				return
			}
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			asked := p.now()
			info, err := r.Consumer.Info(ictx)
			if err == nil {
				if pending, at, berr := oldest.backlog(ictx, r, info); berr == nil {
					r.m.pending.Set(float64(pending))
					r.m.oldestPending(at)
				} else {
					// The backlog gauges keep their last complete figures;
					// the pause and state below come from info, current.
					p.log.Debug("partition consumers not listed", zap.String("receiver", r.Name), zap.Error(berr))
				}
			}
			cancel()
			if err != nil {
				p.log.Debug("consumer info failed", zap.String("receiver", r.Name), zap.Error(err))
				continue
			}
			ratio, _ := r.win.ratio(p.now(), r.Pause.MinRequests)
			r.m.successRatio.Set(ratio)
			r.syncPause(info.Paused, asked, asked.Add(info.PauseRemaining), p.fleet != nil)
			p.publishState(r)
			p.countHeld(ctx, r)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// heldPoll is how often a fetch loop looks whether its receiver's pause or
// block has ended.
const heldPoll = 100 * time.Millisecond

// rampPoll is how often a ramping receiver's fetch loop looks for room.
const rampPoll = 20 * time.Millisecond

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
