package bench

import (
	"bufio"
	"os"
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
func pidStatusKB(pid, field string) int64 {
	f, err := os.Open("/proc/" + pid + "/status")
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
