package backfill

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
)

// report saves the checkpoint every CheckpointEvery and reports progress
// until stop is closed.
func (r *run) report(stop <-chan struct{}, start time.Time) {
	var bar *progressbar.ProgressBar
	tick := r.opts.CheckpointEvery
	if r.opts.Progress != nil {
		tick = min(tick, r.opts.ProgressEvery)
	}
	if r.opts.Progress != nil && r.opts.Terminal {
		size := r.src.Size
		if size <= 0 {
			size = -1
		}
		bar = progressbar.NewOptions64(size,
			progressbar.OptionSetWriter(r.opts.Progress),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionShowBytes(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
		)
		tick = min(tick, 250*time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	lastCheckpoint, lastPlain := start, start
	for {
		select {
		case <-stop:
			if bar != nil {
				_ = bar.Finish()
			}
			return
		case now := <-t.C:
			if now.Sub(lastCheckpoint) >= r.opts.CheckpointEvery {
				lastCheckpoint = now
				if err := r.saveCheckpoint(false); err != nil {
					// The run goes on: the next save may succeed, and the
					// final one's error is returned.
					r.opts.Log.Warn("checkpoint not saved", zap.Error(err))
				}
			}
			elapsed := now.Sub(start)
			switch {
			case bar != nil:
				bar.Describe(fmt.Sprintf("%d lines, %.0f/s, %d invalid", r.lines.Load(), float64(r.lines.Load())/elapsed.Seconds(), r.bad.Load()))
				_ = bar.Set64(r.bytesRead.Load())
			case r.opts.Progress != nil && now.Sub(lastPlain) >= r.opts.ProgressEvery:
				lastPlain = now
				fmt.Fprintln(r.opts.Progress, r.progressLine(elapsed))
			}
		}
	}
}

// progressLine is the plain progress report for logs and pipes.
func (r *run) progressLine(elapsed time.Duration) string {
	lines := r.lines.Load()
	perSec := float64(lines) / elapsed.Seconds()
	s := fmt.Sprintf("backfill: %d lines read, %d valid, %d acked, %d invalid, %.0f lines/s, %s elapsed",
		lines, r.valid.Load(), r.acked.Load(), r.bad.Load(), perSec, elapsed.Round(time.Second))
	if size := r.src.Size; size > 0 {
		read := r.bytesRead.Load()
		pct := 100 * float64(read) / float64(size)
		s += fmt.Sprintf(", %.1f%%", pct)
		done := read - r.read0()
		if done > 0 {
			eta := time.Duration(float64(elapsed) * float64(size-read) / float64(done))
			s += ", ETA " + eta.Round(time.Second).String()
		}
	}
	return s
}

// read0 is the offset the run started at (the checkpoint's when resuming).
func (r *run) read0() int64 { return r.base.Offset }

func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
