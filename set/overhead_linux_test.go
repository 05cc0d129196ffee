//go:build linux

package set_test

import (
	"runtime"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sys/unix"

	"github.com/setrelay/setrelay/signer"
)

// threadCPU is the CPU time consumed by the calling OS thread. Unlike wall
// time it does not count time spent waiting for a core, so the ratio below
// stays meaningful on a machine shared with other builds.
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// BenchmarkOverhead measures setrelay's build+sign against bare go-jose
// signing of the same claims, interleaved in one loop on one locked OS
// thread, in thread CPU time, and reports
//
//	overhead-% = (setrelay CPU per SET / bare CPU per SET - 1) × 100
//
// Targets: ≤ 10 for RS256, ≤ 25 for ES256. Each iteration signs `block`
// SETs each way (the framework's ns/op is per iteration, so read the
// *-cpu-ns/op metrics instead); blocks alternate which side goes first so
// neither always finds the caches warm.
func BenchmarkOverhead(b *testing.B) {
	for _, alg := range signer.Algorithms() {
		b.Run(string(alg), func(b *testing.B) {
			k := kit(b, alg)
			block := 16
			if alg == jose.RS256 || alg == jose.PS256 || alg == jose.ES384 {
				block = 2 // these sign slowly enough to time alone
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			timed := func(f func(*testing.B)) time.Duration {
				t0 := threadCPU(b)
				for range block {
					f(b)
				}
				return threadCPU(b) - t0
			}
			var bare, ours time.Duration
			n := 0
			for b.Loop() {
				if n%2 == 0 {
					bare += timed(k.bareSign)
					ours += timed(k.buildSign)
				} else {
					ours += timed(k.buildSign)
					bare += timed(k.bareSign)
				}
				n++
			}
			sets := float64(n * block)
			b.ReportMetric(float64(bare.Nanoseconds())/sets, "bare-cpu-ns/op")
			b.ReportMetric(float64(ours.Nanoseconds())/sets, "setrelay-cpu-ns/op")
			b.ReportMetric((float64(ours)/float64(bare)-1)*100, "overhead-%")
		})
	}
}
