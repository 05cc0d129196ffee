package ssf

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// retryStart is how soon the dispatcher tries again to serve a stream it
// could not start (its consumer not there yet, its endpoint refused).
const retryStart = time.Second

// Dispatcher pushes to the push streams receivers create at run time. Each
// `setrelay run` process runs one: it watches the streams bucket and runs
// one worker.Pool per enabled push stream, starting it when the
// stream appears, restarting it when its delivery or events change, and
// stopping it (in-flight pushes finish within the grace period, the rest is
// handed back) when the stream is paused or disabled, becomes a poll stream or is
// deleted. A KV watch reports changes within milliseconds, well inside
// the 2 s the issue allows.
type Dispatcher struct {
	s    *Server
	pm   *push.Metrics
	deps worker.Deps

	// GracePeriod bounds in-flight pushes when a stream's pool stops.
	GracePeriod time.Duration
	// Pause tunes every push stream's outage pauses and the probes of a
	// blocked stream; zero fields take the worker's defaults.
	Pause worker.PausePolicy
	// Retry bounds retries of every push stream's SETs; zero fields take
	// the worker's defaults.
	Retry worker.RetryPolicy

	mu      sync.Mutex
	running map[string]*runningStream
}

type runningStream struct {
	fingerprint string // what needs a new pool when it changes
	delivery    string // what needs a new push client
	pusher      *swapPusher
	stream      atomic.Pointer[Stream] // the subject filter's view
	cancel      context.CancelFunc
	done        chan struct{}
}

// swapPusher lets a running pool pick up a new endpoint or authorization
// header at once: the next push uses the new client, without the pool
// (and its in-flight work) being restarted.
type swapPusher struct {
	cur atomic.Pointer[push.Client]
}

func (p *swapPusher) Push(ctx context.Context, jws []byte) push.Result {
	return p.cur.Load().Push(ctx, jws)
}

// NewDispatcher builds the dispatcher of s's push streams; pm may be nil.
func NewDispatcher(s *Server, d worker.Deps, pm *push.Metrics) *Dispatcher {
	if d.Log == nil {
		d.Log = s.log
	}
	return &Dispatcher{s: s, pm: pm, deps: d, GracePeriod: 5 * time.Second, running: map[string]*runningStream{}}
}

// Run serves the push streams until ctx ends, then stops every pool and
// returns once they have stopped.
func (d *Dispatcher) Run(ctx context.Context) error {
	defer d.stopAll()
	gauges := make(chan struct{})
	defer func() { <-gauges }()
	go func() {
		defer close(gauges)
		d.refreshGauges(ctx)
	}()
	if t := d.s.cfg.InactivityTimeout; t > 0 {
		done := make(chan struct{})
		defer func() { <-done }()
		go func() {
			defer close(done)
			d.checkInactivity(ctx, t)
		}()
	}
	for ctx.Err() == nil {
		err := d.watch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.s.log.Warn("watching the streams bucket failed; watching again", zap.Error(err))
		sleep(ctx, retryStart)
	}
	return nil
}

// watch follows the streams bucket; a new watch first replays every
// current stream, so a restarted watch converges too.
func (d *Dispatcher) watch(ctx context.Context) error {
	w, err := d.s.streams.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	retry := time.NewTicker(retryStart)
	defer retry.Stop()
	failed := map[string]*Stream{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-retry.C:
			for id, st := range failed {
				if d.apply(ctx, id, st) == nil {
					delete(failed, id)
				}
			}
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				continue // the end of the initial values
			}
			var st *Stream
			if e.Operation() == jetstream.KeyValuePut {
				if st, err = decodeStream(e.Value()); err != nil {
					d.s.log.Error("undecodable stream entry; not serving it", zap.String("stream_id", e.Key()), zap.Error(err))
				}
			}
			delete(failed, e.Key())
			if err := d.apply(ctx, e.Key(), st); err != nil {
				d.s.log.Warn("cannot serve push stream yet; retrying", zap.String("stream_id", e.Key()), zap.Error(err))
				failed[e.Key()] = st
			}
		}
	}
}

// apply makes the running pools match st (nil: the stream is gone).
func (d *Dispatcher) apply(ctx context.Context, id string, st *Stream) error {
	st = d.s.current(st) // the types this process supports now
	// A paused stream needs no pool: its consumer, paused on the server,
	// holds the events until the receiver enables it again.
	want := st != nil && st.Delivery.Method == MethodPush && st.Status == StatusEnabled
	fp := ""
	if want {
		fp = fingerprint(st)
	}
	d.mu.Lock()
	cur := d.running[id]
	d.mu.Unlock()
	if cur != nil && cur.fingerprint == fp {
		cur.stream.Store(st)
		if dfp := deliveryFingerprint(st); dfp != cur.delivery {
			client, err := d.pushClient(st)
			if err != nil {
				return err
			}
			old := cur.pusher.cur.Swap(client)
			old.CloseIdleConnections()
			cur.delivery = dfp
			// A new endpoint or header may be the fix of a blocked
			// stream: probe it now.
			d.s.requestProbe(ctx, st)
		}
		return nil
	}
	if cur != nil {
		d.stop(id, cur)
	}
	if st == nil && validStreamID(id) {
		// Deleted: the API removed the consumer after the entry, but if
		// that failed (or the process died in between) the consumer
		// would keep holding the stream's backlog. Every process makes
		// sure it is gone; deleting a missing consumer is a no-op.
		if err := d.s.deleteConsumer(ctx, id); err != nil {
			return err
		}
	}
	if !want {
		return nil
	}
	return d.start(ctx, st, fp)
}

// fingerprint is what a running pool is built with: a change restarts it.
func fingerprint(st *Stream) string {
	return fmt.Sprintf("%v|%d", st.EventsDelivered, st.Generation)
}

// deliveryFingerprint is what the push client is built with: a change
// swaps the client.
func deliveryFingerprint(st *Stream) string {
	return fmt.Sprintf("%s|%x", st.Delivery.EndpointURL, hashBytes(st.Delivery.AuthorizationHeader.Reveal()))
}

func (d *Dispatcher) pushClient(st *Stream) (*push.Client, error) {
	s := d.s
	client, err := push.New(push.Config{
		Name:         ReceiverName(st.ID),
		Endpoint:     st.Delivery.EndpointURL,
		Auth:         push.AuthConfig{AuthorizationHeader: st.Delivery.AuthorizationHeader},
		InsecureHTTP: s.cfg.PushInsecureHTTP,
		TLS:          s.cfg.PushTLS,
		MaxConns:     s.cfg.PushConcurrency,
		PublicOnly:   !s.cfg.AllowPrivateEndpoints,
	}, s.log.Named("push"), d.pm)
	if err != nil {
		return nil, fmt.Errorf("push client: %w", err)
	}
	return client, nil
}

func (d *Dispatcher) start(ctx context.Context, st *Stream, fp string) error {
	s := d.s
	name := ReceiverName(st.ID)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := s.js.Consumer(cctx, queue.IntentStream, queue.ConsumerName(name))
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	client, err := d.pushClient(st)
	if err != nil {
		return err
	}
	// The stream's own events pass the type filter here and are told
	// apart from other intents of those types by Accept.
	types := append(slices.Clone(st.EventsDelivered), typeVerification, typeStreamUpdated)
	rs := &runningStream{fingerprint: fp, delivery: deliveryFingerprint(st), pusher: &swapPusher{}, done: make(chan struct{})}
	rs.pusher.cur.Store(client)
	rs.stream.Store(st)
	rcv := worker.Receiver{
		Name: name, Consumer: cons, Profile: s.profile(st), SendKID: s.sendKID,
		Signer: s.signer, Pusher: rs.pusher, Types: types,
		Observer: streamObserver{s: s, id: st.ID}, Pause: d.Pause, Retry: d.Retry,
		Accept: func(ctx context.Context, in *intent.Intent) (bool, error) {
			cur := rs.stream.Load()
			if in.EventType == typeVerification || in.EventType == typeStreamUpdated {
				return ownStreamEvent(cur, in), nil
			}
			return s.subjects.wants(ctx, cur, s.cfg.DefaultSubjects, in.Subject)
		},
	}
	pool, err := worker.New(worker.Config{
		Concurrency: s.cfg.PushConcurrency, GracePeriod: d.GracePeriod,
		Intent:    intent.Options{AllowPrivateTypes: true}, // decoded, then filtered by type
		Receivers: []worker.Receiver{rcv},
	}, d.deps)
	if err != nil {
		client.CloseIdleConnections()
		return fmt.Errorf("worker pool: %w", err)
	}
	pctx, pcancel := context.WithCancel(context.WithoutCancel(ctx))
	rs.cancel = pcancel
	go func() {
		defer close(rs.done)
		defer func() { rs.pusher.cur.Load().CloseIdleConnections() }()
		_ = pool.Run(pctx)
	}()
	d.mu.Lock()
	d.running[st.ID] = rs
	d.mu.Unlock()
	s.log.Info("serving push stream", zap.String("stream_id", st.ID), zap.String("endpoint", st.Delivery.EndpointURL))
	return nil
}

func (d *Dispatcher) stop(id string, rs *runningStream) {
	rs.cancel()
	<-rs.done
	d.mu.Lock()
	if d.running[id] == rs {
		delete(d.running, id)
	}
	d.mu.Unlock()
	d.s.log.Info("stopped serving push stream", zap.String("stream_id", id))
}

func (d *Dispatcher) stopAll() {
	d.mu.Lock()
	all := make(map[string]*runningStream, len(d.running))
	for id, rs := range d.running {
		all[id] = rs
	}
	d.mu.Unlock()
	var wg sync.WaitGroup
	for id, rs := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.stop(id, rs)
		}()
	}
	wg.Wait()
}

// Serving lists the streams this dispatcher is pushing to now.
func (d *Dispatcher) Serving() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.running))
	for id := range d.running {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// checkInactivity pauses inactive streams until ctx ends, checking a few
// times per timeout.
func (d *Dispatcher) checkInactivity(ctx context.Context, timeout time.Duration) {
	every := min(max(timeout/4, 100*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.s.pauseInactive(ctx, min(timeout, NotifyWait))
		}
	}
}

// gaugeInterval is how often the stream gauges are refreshed.
const gaugeInterval = 5 * time.Second

// refreshGauges keeps setrelay_ssf_streams and setrelay_ssf_stream_pending
// current until ctx ends. Every process reports the same registry-wide
// values, so aggregate them with max, not sum.
func (d *Dispatcher) refreshGauges(ctx context.Context) {
	t := time.NewTicker(gaugeInterval)
	defer t.Stop()
	known := map[string]bool{}
	for {
		d.s.updateGauges(ctx, known)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
