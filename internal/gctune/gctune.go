// Package gctune paces the garbage collector of a long-running relay.
//
// A worker's live heap is small (a few MiB: configuration, connections,
// metrics) while it allocates steadily, some 20 kB per SET. With the
// default GOGC=100 the heap goal is twice the live heap, so at 1,000 SETs a
// second the collector runs five times a second: a few percent of the CPU,
// and every cycle's mark phase slows the messages in flight, which shows in
// the latency tail. Run gives the collector a fixed headroom instead: the
// heap may grow by max(live heap, headroom) before the next cycle, so a
// small heap is collected less often and a large one (an embedded server
// holding a backlog) exactly as with GOGC=100. Memory stays bounded:
// at most the live heap plus the headroom, or twice the live heap.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// DefaultHeadroom is how far the heap may grow past the live heap before a
// collection, when the live heap is smaller than that. It is small on
// purpose: a 'setrelay run' worker's live heap is about 4 MiB and its RSS
// about 53 MiB with GOGC=100, and RSS grows about one for one with the
// headroom (24 MiB took it to 82 MiB), while the 64 MiB budget of a worker
// must hold. 8 MiB halves the collections of such a worker (about 58 MiB).
const DefaultHeadroom = 8 << 20

// maxPercent caps GOGC, so a nearly empty heap does not get an unbounded
// multiple of itself (the headroom already bounds the bytes).
const maxPercent = 1000

// minHeap is the Go runtime's minimum heap goal at GOGC=100 (4 MiB, scaled
// by GOGC/100). A live heap below it is taken as this size, so that a high
// GOGC never raises that minimum past live + headroom: right after start,
// before the first collection, the live heap reads 0.
const minHeap = 4 << 20

// Percent is the GOGC that lets a heap with live bytes grow by
// max(live, headroom) before the next collection: headroom/live as a
// percentage, at least 100 (the default) and at most 1000, with live taken
// as at least 4 MiB (minHeap).
func Percent(live, headroom uint64) int {
	live = max(live, minHeap)
	p := headroom * 100 / live
	return int(min(max(p, 100), maxPercent))
}

// Current is the GOGC in effect.
func Current() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	return int(s[0].Value.Uint64())
}

// Run sets GOGC from the live heap every interval until ctx is done, then
// puts back the setting it found. It does nothing when the GOGC or
// GOMEMLIMIT environment variable is set: an operator's choice wins. It
// changes the setting only when it moves by more than a tenth, so a steady
// heap leaves it alone.
func Run(ctx context.Context, headroom uint64, interval time.Duration) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := Current()
	orig := cur
	defer debug.SetGCPercent(orig)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			p := Percent(sample[0].Value.Uint64(), headroom)
			if d := p - cur; d*10 > cur || -d*10 > cur {
				debug.SetGCPercent(p)
				cur = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
