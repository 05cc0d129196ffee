package worker

import (
	"sync"
	"time"
)

// window is a sliding window of push outcomes over the last span, in
// windowBuckets buckets, for telling a degraded receiver from a down one.
//
// It keeps first attempts (fresh intents) apart from retries: an intent
// that failed once is likelier to fail again (it is the one that hit the
// bad node, or the slow path), and during a blip the retries of its
// failures would otherwise outvote the fresh traffic that shows the
// receiver is fine. So the ratio is taken over first attempts when the
// window holds at least minRequests of them, and over everything only when
// the feed is too quiet for that.
type window struct {
	mu      sync.Mutex
	span    time.Duration
	buckets [windowBuckets]bucket
}

const windowBuckets = 10

type bucket struct {
	start                        int64 // unix nanos of the bucket's start; 0 unused
	ok, fail, freshOK, freshFail int
}

func (w *window) slot(now time.Time) *bucket {
	width := int64(w.span) / windowBuckets
	start := now.UnixNano() / width * width
	b := &w.buckets[(start/width)%windowBuckets]
	if b.start != start {
		*b = bucket{start: start}
	}
	return b
}

// record adds one push outcome.
func (w *window) record(now time.Time, ok, fresh bool) {
	w.mu.Lock()
	b := w.slot(now)
	switch {
	case ok && fresh:
		b.ok++
		b.freshOK++
	case ok:
		b.ok++
	case fresh:
		b.fail++
		b.freshFail++
	default:
		b.fail++
	}
	w.mu.Unlock()
}

// ratio returns the window's success ratio (see window) and the number of
// outcomes it is taken over.
func (w *window) ratio(now time.Time, minRequests int) (float64, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	oldest := now.Add(-w.span).UnixNano()
	var ok, fail, freshOK, freshFail int
	for i := range w.buckets {
		b := &w.buckets[i]
		if b.start == 0 || b.start < oldest {
			continue
		}
		ok, fail, freshOK, freshFail = ok+b.ok, fail+b.fail, freshOK+b.freshOK, freshFail+b.freshFail
	}
	if n := freshOK + freshFail; n >= minRequests {
		return float64(freshOK) / float64(n), n
	}
	n := ok + fail
	if n == 0 {
		return 1, 0
	}
	return float64(ok) / float64(n), n
}

// reset forgets everything, after a recovery.
func (w *window) reset() {
	w.mu.Lock()
	w.buckets = [windowBuckets]bucket{}
	w.mu.Unlock()
}
