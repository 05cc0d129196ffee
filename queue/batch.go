package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
)

// Batch publisher defaults.
const (
	DefaultBatchWindow     = 256
	DefaultBatchAckTimeout = 30 * time.Second
	DefaultBatchRetries    = 5
)

// ErrBatchClosed is returned by Add after Close.
var ErrBatchClosed = errors.New("queue: batch publisher closed")

// BatchResult is the outcome of one publish added to a BatchPublisher.
type BatchResult struct {
	ID  string // the intent id (Nats-Msg-Id)
	Ref int64  // the caller's reference passed to Add, e.g. a line number
	// Sequence is the stream sequence; for a duplicate, the original's.
	Sequence  uint64
	Duplicate bool
	// Err is non-nil when the intent was not stored (ErrStreamFull, ...).
	Err error
	// Sends is how many times it was sent: more than 1 after a disconnect
	// or a lost ack.
	Sends int
}

// BatchOptions configure a BatchPublisher.
type BatchOptions struct {
	// Window is the most publishes awaiting their ack at once
	// (DefaultBatchWindow). Add blocks while the window is full, which keeps
	// memory flat however many intents are published.
	Window int
	// AckTimeout fails a publish whose ack does not arrive in time
	// (DefaultBatchAckTimeout); it is then retried like a disconnect.
	AckTimeout time.Duration
	// Retries is how many times a publish lost to a disconnect or ack timeout
	// is re-sent (DefaultBatchRetries; negative for none). Re-sending is safe:
	// the Nats-Msg-Id deduplicates it.
	Retries int
	// Intent configures validation in Publish.
	Intent intent.Options
	// OnResult receives every result, on one goroutine, in the order the
	// publishes were added. A backfill can therefore checkpoint the Ref of
	// each result it sees: everything added before it is settled. OnResult
	// must not call Add, Publish, Flush or Close (the window would deadlock).
	OnResult func(BatchResult)
}

// BatchStats counts a BatchPublisher's settled publishes.
type BatchStats struct {
	Stored, Duplicates, Failed uint64
}

// BatchPublisher publishes intents asynchronously with a bounded window of
// in-flight publishes and reports each result. It keeps nothing about a
// publish once its result is delivered. Add may be called from several
// goroutines; results then follow the order in which Add calls won the
// internal lock.
type BatchPublisher struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts BatchOptions

	// slots holds a token per publish not yet reported; its capacity is the
	// window.
	slots chan struct{}
	// mu orders publish-then-enqueue so that results come back in order,
	// and guards closed.
	mu      sync.Mutex
	closed  bool
	pending chan pendingPub
	done    chan struct{}

	stored, duplicates, failed atomic.Uint64
}

type pendingPub struct {
	fut jetstream.PubAckFuture
	msg *nats.Msg
	id  string
	ref int64
}

// NewBatchPublisher returns a BatchPublisher on nc. It uses its own
// JetStream context because the client's async window and ack bookkeeping
// are per context; sharing one with other publishers would mix them.
func NewBatchPublisher(nc *nats.Conn, opts BatchOptions) (*BatchPublisher, error) {
	if opts.Window <= 0 {
		opts.Window = DefaultBatchWindow
	}
	if opts.AckTimeout <= 0 {
		opts.AckTimeout = DefaultBatchAckTimeout
	}
	if opts.Retries == 0 {
		opts.Retries = DefaultBatchRetries
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(opts.Window),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("queue: batch publisher: %w", err)
	}
	b := &BatchPublisher{
		nc:      nc,
		js:      js,
		opts:    opts,
		slots:   make(chan struct{}, opts.Window),
		pending: make(chan pendingPub, opts.Window),
		done:    make(chan struct{}),
	}
	go b.collect()
	return b, nil
}

// Publish validates and encodes in like Publisher.Publish, then adds it. A
// validation error is returned here and never reaches OnResult.
func (b *BatchPublisher) Publish(ctx context.Context, in *intent.Intent, ref int64) error {
	data, err := Encode(in, b.opts.Intent)
	if err != nil {
		return err
	}
	return b.add(ctx, IntentSubjectFor(in.Subject), in.ID, data, ref)
}

// Add publishes already-validated intent bytes with Nats-Msg-Id = id and the
// traceparent from ctx. It blocks while the window is full. A nil error means
// the result will reach OnResult; an error means it will not. data is kept
// (for a re-send) until its result is reported, so the caller must not reuse
// the buffer: copy bufio.Scanner.Bytes, for instance.
//
// The subject is read from data to choose the intent's slot subject
// (partition.go); the window keeps submission order per slot, so a file's
// intents about one subject are stored in file order.
func (b *BatchPublisher) Add(ctx context.Context, id string, data []byte, ref int64) error {
	return b.add(ctx, SlotSubject(slotOf(data)), id, data, ref)
}

func (b *BatchPublisher) add(ctx context.Context, subject, id string, data []byte, ref int64) error {
	msg, err := intentMsg(ctx, subject, id, data, nil)
	if err != nil {
		return err
	}
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("queue: batch add %q: %w", id, ctx.Err())
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		<-b.slots
		return ErrBatchClosed
	}
	fut, err := b.js.PublishMsgAsync(msg, jetstream.WithExpectStream(IntentStream))
	if err != nil {
		<-b.slots
		return publishError(id, err)
	}
	// Never blocks: pending has room for every slot.
	b.pending <- pendingPub{fut: fut, msg: msg, id: id, ref: ref}
	return nil
}

// Flush waits until every publish added before it has been reported to
// OnResult. Adds made concurrently with Flush may or may not be included.
func (b *BatchPublisher) Flush(ctx context.Context) error {
	// Holding every slot means no publish is outstanding.
	held := 0
	defer func() {
		for ; held > 0; held-- {
			<-b.slots
		}
	}()
	for held < cap(b.slots) {
		select {
		case b.slots <- struct{}{}:
			held++
		case <-ctx.Done():
			return fmt.Errorf("queue: batch flush: %d publishes still awaiting acks: %w", cap(b.slots)-held, ctx.Err())
		}
	}
	return nil
}

// Close flushes, stops accepting publishes and waits for the result
// goroutine to exit. If ctx ends first, the goroutine still exits once the
// outstanding acks arrive or time out.
func (b *BatchPublisher) Close(ctx context.Context) error {
	flushErr := b.Flush(ctx)
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.pending)
	}
	b.mu.Unlock()
	if flushErr != nil {
		return flushErr
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("queue: batch close: %w", ctx.Err())
	}
}

// Stats returns the counts of settled publishes so far.
func (b *BatchPublisher) Stats() BatchStats {
	return BatchStats{Stored: b.stored.Load(), Duplicates: b.duplicates.Load(), Failed: b.failed.Load()}
}

// collect reports results in submission order. It exits when Close closes
// pending and the last outstanding publish is settled.
func (b *BatchPublisher) collect() {
	defer close(b.done)
	for p := range b.pending {
		res := b.settle(p)
		switch {
		case res.Err != nil:
			b.failed.Add(1)
		case res.Duplicate:
			b.duplicates.Add(1)
		default:
			b.stored.Add(1)
		}
		if b.opts.OnResult != nil {
			b.opts.OnResult(res)
		}
		// Released after the callback so that Flush also means "reported".
		<-b.slots
	}
}

// settle waits for p's ack, re-sending it after a transient loss.
func (b *BatchPublisher) settle(p pendingPub) BatchResult {
	res := BatchResult{ID: p.id, Ref: p.ref}
	fut := p.fut
	var lastErr error
	for attempt := 0; ; attempt++ {
		res.Sends = attempt + 1
		if fut != nil {
			select {
			case ack := <-fut.Ok():
				res.Sequence, res.Duplicate = ack.Sequence, ack.Duplicate
				return res
			case lastErr = <-fut.Err():
			}
		}
		if !transientPublishError(lastErr) || attempt >= b.opts.Retries {
			res.Err = publishError(p.id, lastErr)
			return res
		}
		// Wait for the reconnect rather than queueing the re-send into a
		// connection that may not come back soon; the slot stays held, so
		// the window still bounds what is in flight. The other publishes
		// lost in the same disconnect then re-send at once.
		b.awaitConnected()
		var err error
		if fut, err = b.js.PublishMsgAsync(p.msg, jetstream.WithExpectStream(IntentStream)); err != nil {
			fut, lastErr = nil, err
		}
	}
}

// awaitConnected waits, at most AckTimeout, for the connection to be up.
func (b *BatchPublisher) awaitConnected() {
	deadline := time.Now().Add(b.opts.AckTimeout)
	for !b.nc.IsConnected() && !b.nc.IsClosed() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// transientPublishError reports a publish lost for reasons unrelated to the
// message (a disconnect, a lost ack), so that re-sending it, deduplicated by
// its id, is right.
func transientPublishError(err error) bool {
	return errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, jetstream.ErrAsyncPublishTimeout) ||
		errors.Is(err, nats.ErrTimeout)
}
