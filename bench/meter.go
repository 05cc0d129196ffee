package bench

import (
	"bufio"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// meter is a reading of this process's CPU time, the whole machine's busy
// CPU time and the wall clock, taken the same way as the baseline's
// cpumeter so the figures compare.
type meter struct {
	wall time.Time
	self time.Duration
	mach time.Duration
}

func takeMeter() meter { return meter{wall: time.Now(), self: selfCPU(), mach: machineBusy()} }

type meterDelta struct{ wall, self, mach time.Duration }

func (m meter) since(start meter) meterDelta {
	return meterDelta{wall: m.wall.Sub(start.wall), self: m.self - start.self, mach: m.mach - start.mach}
}

// foreign is the CPU time other processes used meanwhile.
func (d meterDelta) foreign() time.Duration { return max(0, d.mach-d.self) }

// selfCPU is user+system time of this process (getrusage RUSAGE_SELF).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the busy CPU time of the whole machine from /proc/stat's
// first line: every field but idle and iowait, guest time being already
// counted in user. 0 where /proc is not there.
func machineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	var ticks float64
	for i, v := range f[1:] {
		if i >= 8 {
			break
		}
		if i == 3 || i == 4 {
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		ticks += x
	}
	return time.Duration(ticks * float64(time.Second) / 100) // USER_HZ is 100 on Linux
}

// procStatusKB reads one kB field (VmRSS, VmHWM) of /proc/self/status; 0
// where it is not there.
func procStatusKB(field string) int64 { return pidStatusKB("self", field) }

// pidStatusKB reads one kB field of /proc/PID/status (pid "self" for this
// process); 0 where it is not there.
func pidStatusKB(pid, field string) int64 { return procFileKB("/proc/"+pid+"/status", field) }

// pidSmapsKB reads one kB field of /proc/PID/smaps_rollup (the sums over
// every mapping); 0 where it is not there.
func pidSmapsKB(pid, field string) int64 { return procFileKB("/proc/"+pid+"/smaps_rollup", field) }

// procFileKB reads the "Field: N kB" line of a /proc file.
func procFileKB(path, field string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		return v
	}
	return 0
}

// runtimeReading is a reading of the Go runtime's allocation and
// collection counters (runtime/metrics, which does not stop the world).
type runtimeReading struct {
	allocs, bytes, cycles uint64
	gcCPU                 float64 // seconds, the runtime's estimate
}

var runtimeSamples = []string{
	"/gc/heap/allocs:objects",
	"/gc/heap/allocs:bytes",
	"/gc/cycles/total:gc-cycles",
	"/cpu/classes/gc/total:cpu-seconds",
}

func readRuntime() runtimeReading {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	u := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	var gc float64
	if s[3].Value.Kind() == metrics.KindFloat64 {
		gc = s[3].Value.Float64()
	}
	return runtimeReading{allocs: u(0), bytes: u(1), cycles: u(2), gcCPU: gc}
}

// since is the difference from an earlier reading.
func (r runtimeReading) since(start runtimeReading) runtimeReading {
	return runtimeReading{
		allocs: r.allocs - start.allocs,
		bytes:  r.bytes - start.bytes,
		cycles: r.cycles - start.cycles,
		gcCPU:  r.gcCPU - start.gcCPU,
	}
}
