package backfill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// Defaults for Options fields left zero.
const (
	DefaultWindow          = 1024
	DefaultCheckpointEvery = time.Second
	DefaultProgressEvery   = 5 * time.Second
	DefaultDrainTimeout    = 30 * time.Second
)

// ErrInterrupted is returned (wrapped) when ctx ended the run before the end
// of the input. The checkpoint was saved; run again with resume to continue.
var ErrInterrupted = errors.New("backfill: interrupted")

// Source is the NDJSON input.
type Source struct {
	// R is read line by line. When it is an io.Seeker, resuming seeks to
	// the checkpoint; otherwise the bytes before it are read and skipped
	// (standard input fed the same data again).
	R io.Reader
	// Name identifies the input in the checkpoint ("-" for standard input).
	Name string
	// Size is the input's size in bytes for the ETA, or -1 when unknown.
	Size int64
}

// Options configure a Run.
type Options struct {
	// Window is the most publishes awaiting their ack (DefaultWindow).
	Window int
	// Rate limits publishes per second; 0 means unlimited.
	Rate float64
	// DryRun validates and writes the rejects file but publishes nothing
	// and writes no checkpoint.
	DryRun bool
	// Intent configures validation; match the relay's (AllowPrivateTypes).
	Intent intent.Options
	// Check, when set, is asked about every intent that passed validation;
	// an error rejects the line like a validation problem (the CLI refuses
	// intents naming receivers that are not configured).
	Check func(*intent.Intent) error
	// Checkpoint is the checkpoint file's path ("" for none).
	Checkpoint string
	// Resume continues from Checkpoint instead of the start.
	Resume bool
	// Rejects is the rejects file's path ("" discards rejects, which are
	// still counted).
	Rejects string
	// Progress receives progress reports (nil for none): a progress bar when
	// Terminal, otherwise a plain line every ProgressEvery.
	Progress      io.Writer
	Terminal      bool
	ProgressEvery time.Duration
	// CheckpointEvery is how often the checkpoint is saved while running.
	CheckpointEvery time.Duration
	// AckTimeout and Retries are passed to queue.BatchOptions.
	AckTimeout time.Duration
	Retries    int
	// DrainTimeout bounds the wait for in-flight acks after an interrupt
	// or at the end (DefaultDrainTimeout).
	DrainTimeout time.Duration
	// OnResult, when set, sees every publish result after it is counted
	// (tests interrupt a run after a number of acks with it).
	OnResult func(queue.BatchResult)
	Log      *zap.Logger
}

// Summary is what a run did. Counts are for this run only; Checkpoint holds
// the totals over resumed runs.
type Summary struct {
	// StartLine is the number of lines skipped because a checkpoint
	// covered them.
	StartLine int64
	// Read counts lines read in this run, blank ones included.
	Read uint64
	// Valid counts lines that passed validation.
	Valid uint64
	// Published counts intents stored; Duplicates those JetStream already
	// had (same id within the duplicate window); Failed those not stored.
	Published, Duplicates, Failed uint64
	// Invalid counts rejected lines.
	Invalid     uint64
	Elapsed     time.Duration
	Interrupted bool
	// DryRun reports that nothing was published (Options.DryRun).
	DryRun     bool
	Checkpoint Checkpoint
	// CheckpointFile is where Checkpoint was saved: Options.Checkpoint,
	// "" when none is written (standard input without one).
	CheckpointFile string
}

// checkpointNote says where a run can be resumed from, or that it cannot:
// an interrupted run over standard input without a checkpoint file must
// not claim a checkpoint it never wrote.
func (s Summary) checkpointNote() string {
	if s.CheckpointFile == "" {
		return "no checkpoint written (give --checkpoint to be able to resume)"
	}
	return fmt.Sprintf("checkpoint at line %d in %s", s.Checkpoint.Line, s.CheckpointFile)
}

// Rate is the lines read per second.
func (s Summary) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Read) / s.Elapsed.Seconds()
}

// String is the one-line summary printed at the end.
func (s Summary) String() string {
	state := "done"
	if s.Interrupted {
		state = "interrupted"
	} else if s.Failed > 0 {
		state = "failed"
	}
	if s.DryRun {
		return fmt.Sprintf("backfill dry run %s: read %d lines, %d valid, %d invalid in %s (%.0f lines/s); nothing published",
			state, s.Read, s.Valid, s.Invalid, s.Elapsed.Round(time.Millisecond), s.Rate())
	}
	return fmt.Sprintf("backfill %s: read %d lines, published %d, duplicates %d, invalid %d, failed %d in %s (%.0f lines/s); %s",
		state, s.Read, s.Published, s.Duplicates, s.Invalid, s.Failed, s.Elapsed.Round(time.Millisecond), s.Rate(), s.checkpointNote())
}

// position is a point in the input between two lines.
type position struct {
	line, offset, rejects int64
}

// inflight is a publish awaiting its ack, with the position before its line.
type inflight struct {
	ref  int64
	prev position
}

// run is the state shared by the reading goroutine, the publisher's result
// goroutine and the reporting goroutine.
type run struct {
	opts Options
	src  Source

	mu sync.Mutex
	// queue holds the publishes awaiting acks in submission order; results
	// arrive in that order, so the head is the lowest un-acked line.
	queue []inflight
	head  int
	// read is the position after the last line the reader handled.
	read position
	// frozen is the position before the first failed publish: the
	// checkpoint never passes it.
	frozen    *position
	failErr   error
	rejects   *rejectsFile
	base      Checkpoint
	published uint64
	dups      uint64
	invalid   uint64
	failed    uint64

	bytesRead atomic.Int64
	lines     atomic.Uint64
	valid     atomic.Uint64
	acked     atomic.Uint64
	bad       atomic.Uint64
}

// Run reads src to the end (or until ctx ends) and publishes its valid
// intents on nc, which may be nil for a dry run. The error is nil when every
// line was read and every valid one stored, even if some were rejected
// (Summary.Invalid says so); it wraps ErrInterrupted after ctx ended.
func Run(ctx context.Context, nc *nats.Conn, src Source, opts Options) (Summary, error) {
	start := time.Now()
	opts = withDefaults(opts)
	r := &run{opts: opts, src: src}
	resumed := false

	if opts.Resume && !opts.DryRun && opts.Checkpoint != "" {
		cp, err := LoadCheckpoint(opts.Checkpoint)
		switch {
		case err == nil:
			if err := r.resumeFrom(cp); err != nil {
				return Summary{}, err
			}
			resumed = true
		case isNotExist(err):
			opts.Log.Info("no checkpoint yet; starting from the first line", zap.String("checkpoint", opts.Checkpoint))
		default:
			return Summary{}, err
		}
	}
	r.base.File, r.base.Size = src.Name, src.Size

	if opts.Rejects != "" {
		rf, err := openRejects(opts.Rejects, resumed, r.read.rejects)
		if err != nil {
			return Summary{}, err
		}
		r.rejects = rf
	}
	if r.base.Done {
		// Nothing left to do; say so rather than re-reading the file.
		sum := r.summary(start, false)
		sum.Checkpoint.Done = true
		return sum, r.closeRejects()
	}
	if r.read.offset > 0 {
		if err := skipTo(src.R, r.read.offset); err != nil {
			return Summary{}, errors.Join(err, r.closeRejects())
		}
		r.bytesRead.Store(r.read.offset)
	}

	var pub *queue.BatchPublisher
	if !opts.DryRun {
		if nc == nil {
			return Summary{}, errors.Join(errors.New("backfill: no NATS connection"), r.closeRejects())
		}
		var err error
		pub, err = queue.NewBatchPublisher(nc, queue.BatchOptions{
			Window: opts.Window, AckTimeout: opts.AckTimeout, Retries: opts.Retries,
			Intent: opts.Intent, OnResult: r.onResult,
		})
		if err != nil {
			return Summary{}, errors.Join(err, r.closeRejects())
		}
	}

	// The reporter saves checkpoints and prints progress until the reading
	// and draining below are over.
	stopReport := make(chan struct{})
	reportDone := make(chan struct{})
	go func() {
		defer close(reportDone)
		r.report(stopReport, start)
	}()

	readErr := r.readAll(ctx, pub)
	interrupted := errors.Is(readErr, context.Canceled) || errors.Is(readErr, context.DeadlineExceeded)

	var drainErr error
	if pub != nil {
		// Wait, boundedly, for the acks of what is in flight, so that the
		// checkpoint covers as much as possible. The caller's ctx may be
		// cancelled already: use a fresh one.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.DrainTimeout)
		drainErr = pub.Close(dctx)
		cancel()
	}
	close(stopReport)
	<-reportDone

	done := readErr == nil && drainErr == nil && r.failure() == nil
	sum := r.summary(start, interrupted)
	sum.Checkpoint.Done = done && !opts.DryRun
	var saveErr error
	if !opts.DryRun {
		saveErr = r.saveCheckpoint(done)
		sum.Checkpoint = r.checkpointNow(done)
	}
	closeErr := r.closeRejects()

	switch {
	case interrupted:
		return sum, errors.Join(fmt.Errorf("%w at line %d (%s): %w", ErrInterrupted, r.read.line, sum.checkpointNote(), readErr), drainErr, saveErr, closeErr)
	case readErr != nil:
		return sum, errors.Join(readErr, drainErr, saveErr, closeErr)
	case r.failure() != nil:
		return sum, errors.Join(r.failure(), saveErr, closeErr)
	}
	return sum, errors.Join(drainErr, saveErr, closeErr)
}

func withDefaults(o Options) Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.CheckpointEvery <= 0 {
		o.CheckpointEvery = DefaultCheckpointEvery
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = DefaultProgressEvery
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return o
}

func (r *run) resumeFrom(cp Checkpoint) error {
	if cp.File != r.src.Name {
		return fmt.Errorf("backfill: checkpoint %s is for %q, not %q; remove it or pass another --checkpoint", r.opts.Checkpoint, cp.File, r.src.Name)
	}
	if cp.Size >= 0 && r.src.Size >= 0 && cp.Size != r.src.Size {
		return fmt.Errorf("backfill: checkpoint %s is for a %d-byte %s, but it is now %d bytes; the file changed, so resuming could skip or repeat lines", r.opts.Checkpoint, cp.Size, cp.File, r.src.Size)
	}
	r.base = cp
	r.read = position{line: cp.Line, offset: cp.Offset, rejects: cp.RejectsOffset}
	return nil
}

// skipTo positions r at offset: a seek when it can, reading otherwise.
func skipTo(r io.Reader, offset int64) error {
	if s, ok := r.(io.Seeker); ok {
		if _, err := s.Seek(offset, io.SeekStart); err == nil {
			return nil
		}
	}
	n, err := io.CopyN(io.Discard, r, offset)
	if err != nil {
		return fmt.Errorf("backfill: skip to the checkpoint's offset %d (got %d bytes): %w", offset, n, err)
	}
	return nil
}

// readAll reads, validates and publishes every line. It returns ctx's error
// when interrupted and nil at the end of the input.
func (r *run) readAll(ctx context.Context, pub *queue.BatchPublisher) error {
	lr := newLineReader(r.src.R)
	var lim *rate.Limiter
	if r.opts.Rate > 0 {
		// A burst of a tenth of a second's worth keeps the limiter's
		// per-call cost low at high rates without bursting noticeably.
		lim = rate.NewLimiter(rate.Limit(r.opts.Rate), max(1, min(int(r.opts.Rate/10), r.opts.Window)))
	}
	lineNo := r.read.line
	offset := r.read.offset
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.failure() != nil {
			return nil
		}
		raw, n, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("backfill: read %s at line %d: %w", r.src.Name, lineNo+1, err)
		}
		lineNo++
		next := offset + n
		r.lines.Add(1)
		r.bytesRead.Store(next)

		var verdict error
		var data []byte
		var id string
		switch {
		case tooLong:
			verdict = errors.New("line is longer than " + strconv.Itoa(intent.MaxSize) + " bytes, the intent size limit")
		default:
			data = bytes.TrimSpace(raw)
			if len(data) == 0 {
				// Blank lines (a trailing newline, spacing) are not intents.
				r.advance(position{line: lineNo, offset: next})
				offset = next
				continue
			}
			in, derr := intent.Decode(data, r.opts.Intent)
			if derr == nil && r.opts.Check != nil {
				derr = r.opts.Check(in)
			}
			if derr != nil {
				verdict = derr
			} else {
				id = in.ID
			}
		}
		if verdict != nil {
			if err := r.reject(rejectFor(lineNo, data, verdict), position{line: lineNo, offset: next}); err != nil {
				return err
			}
			offset = next
			continue
		}
		r.valid.Add(1)
		if pub == nil {
			r.advance(position{line: lineNo, offset: next})
			offset = next
			continue
		}
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("backfill: rate limit: %w", err)
			}
		}
		// The reader's buffer is reused by the next line, and the
		// publisher keeps the bytes until the ack (to re-send them).
		if err := r.add(ctx, pub, id, bytes.Clone(data), lineNo, next); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		offset = next
	}
}

// add registers the publish as in flight, then hands it to the publisher.
func (r *run) add(ctx context.Context, pub *queue.BatchPublisher, id string, data []byte, lineNo, next int64) error {
	r.mu.Lock()
	prev := r.read
	r.queue = append(r.queue, inflight{ref: lineNo, prev: prev})
	r.mu.Unlock()
	if err := pub.Add(ctx, id, data, lineNo); err != nil {
		// Not published and never reported: take it back. Nothing was added
		// after it, so it is the queue's tail.
		r.mu.Lock()
		r.queue = r.queue[:len(r.queue)-1]
		r.mu.Unlock()
		return fmt.Errorf("backfill: line %d: %w", lineNo, err)
	}
	r.mu.Lock()
	r.read = position{line: lineNo, offset: next, rejects: prev.rejects}
	r.mu.Unlock()
	return nil
}

// advance moves the read position past a line that needs no publish.
func (r *run) advance(p position) {
	r.mu.Lock()
	p.rejects = r.read.rejects
	r.read = p
	r.mu.Unlock()
}

// reject records an invalid line and moves past it.
func (r *run) reject(rj Reject, p position) error {
	r.bad.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.invalid++
	p.rejects = r.read.rejects
	if r.rejects != nil {
		if err := r.rejects.write(rj); err != nil {
			return err
		}
		p.rejects = r.rejects.size
	}
	r.read = p
	return nil
}

// onResult runs on the publisher's result goroutine, in submission order.
func (r *run) onResult(res queue.BatchResult) {
	r.mu.Lock()
	var head inflight
	if r.head < len(r.queue) {
		head = r.queue[r.head]
		r.head++
		// Drop the settled prefix now and then, so the queue's memory stays
		// bounded by the window.
		if r.head >= 4096 && r.head*2 >= len(r.queue) {
			r.queue = append(r.queue[:0], r.queue[r.head:]...)
			r.head = 0
		}
	}
	switch {
	case res.Err != nil:
		r.failed++
		if r.frozen == nil {
			p := head.prev
			r.frozen = &p
			r.failErr = fmt.Errorf("backfill: line %d (intent %q) was not stored: %w", res.Ref, res.ID, res.Err)
		}
	case res.Duplicate:
		r.dups++
	default:
		r.published++
	}
	if head.ref != res.Ref && r.failErr == nil {
		// Results come in submission order; anything else is a bug that
		// would make the checkpoint lie, so stop rather than continue.
		p := head.prev
		r.frozen = &p
		r.failErr = fmt.Errorf("backfill: publish result for line %d arrived when line %d was expected", res.Ref, head.ref)
	}
	r.mu.Unlock()
	r.acked.Add(1)
	if r.opts.OnResult != nil {
		r.opts.OnResult(res)
	}
}

func (r *run) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failErr
}

// settledLocked is the position before the lowest line not yet settled.
func (r *run) settledLocked() position {
	if r.frozen != nil {
		return *r.frozen
	}
	if r.head < len(r.queue) {
		return r.queue[r.head].prev
	}
	return r.read
}

// checkpointNow builds the checkpoint for the current settled position.
// The counts are those up to the read position when nothing is in flight,
// and otherwise may include a few results past the checkpoint; they are a
// report, not a resume position.
func (r *run) checkpointNow(done bool) Checkpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkpointLocked(done)
}

func (r *run) checkpointLocked(done bool) Checkpoint {
	p := r.settledLocked()
	cp := r.base
	cp.Offset, cp.Line, cp.RejectsOffset = p.offset, p.line, p.rejects
	cp.Published += r.published
	cp.Duplicates += r.dups
	cp.Invalid += r.invalid
	cp.Done = done
	cp.Updated = time.Now().UTC()
	return cp
}

// saveCheckpoint flushes the rejects file up to the checkpoint, then saves
// the checkpoint, so that a checkpoint never covers a reject not on disk.
func (r *run) saveCheckpoint(done bool) error {
	if r.opts.Checkpoint == "" || r.opts.DryRun {
		return nil
	}
	r.mu.Lock()
	cp := r.checkpointLocked(done)
	var err error
	if r.rejects != nil {
		err = r.rejects.flush()
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	if r.rejects != nil {
		if err := r.rejects.f.Sync(); err != nil {
			return fmt.Errorf("backfill: sync rejects file: %w", err)
		}
	}
	return cp.Save(r.opts.Checkpoint)
}

func (r *run) closeRejects() error {
	if r.rejects == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rf := r.rejects
	r.rejects = nil
	return rf.close()
}

func (r *run) summary(start time.Time, interrupted bool) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	cpFile := r.opts.Checkpoint
	if r.opts.DryRun {
		cpFile = "" // a dry run writes no checkpoint
	}
	return Summary{
		StartLine:      r.base.Line,
		Read:           r.lines.Load(),
		Valid:          r.valid.Load(),
		Published:      r.published,
		Duplicates:     r.dups,
		Failed:         r.failed,
		Invalid:        r.invalid,
		Elapsed:        time.Since(start),
		Interrupted:    interrupted,
		DryRun:         r.opts.DryRun,
		Checkpoint:     r.checkpointLocked(false),
		CheckpointFile: cpFile,
	}
}
