package worker

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
)

// switchable is a receiver that answers 503 while down, else 202 after
// delay, and tracks the most requests it had in flight since a mark.
type switchable struct {
	*scripted
	down     atomic.Bool
	delay    time.Duration
	inflight atomic.Int64
	mu       sync.Mutex
	peak     int64
	accepted atomic.Int64
	firstOK  atomic.Int64 // unix nanos of the first 202 after coming back
}

func newSwitchable(t *testing.T, delay time.Duration) *switchable {
	s := &switchable{delay: delay}
	s.down.Store(true)
	s.scripted = newScripted(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		if s.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		n := s.inflight.Add(1)
		s.mu.Lock()
		s.peak = max(s.peak, n)
		s.mu.Unlock()
		time.Sleep(s.delay)
		s.inflight.Add(-1)
		s.firstOK.CompareAndSwap(0, time.Now().UnixNano())
		s.accepted.Add(1)
		w.WriteHeader(http.StatusAccepted)
	})
	return s
}

func (s *switchable) peakSince() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peak
	s.peak = 0
	return p
}

// TestRecoveryNoticedWithinProbeInterval is issue 19's must-show, with short
// settings: a receiver down long enough for its pause to have grown (and
// one whose pause starts at pause.max) is delivered to within
// probe_interval + 2 s of coming back, not at the end of the current pause.
func TestRecoveryNoticedWithinProbeInterval(t *testing.T) {
	for _, tc := range []struct {
		name           string
		pause          PausePolicy
		downFor        time.Duration
		minPauseAtBack time.Duration
	}{
		// Pauses of 1 s, 2 s, 4 s, 8 s ...: after 4 s down the current
		// pause has several seconds left.
		{"grown pause", PausePolicy{Threshold: 5, Initial: time.Second, Max: 30 * time.Second, ProbeInterval: 500 * time.Millisecond}, 3 * time.Second, 3 * time.Second},
		// Already at pause.max, as after a long outage.
		{"pause at max", PausePolicy{Threshold: 5, Initial: 20 * time.Second, Max: 20 * time.Second, ProbeInterval: 500 * time.Millisecond}, 2 * time.Second, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 30*time.Second, "back")
			rcv := newSwitchable(t, 0)
			spec := e.spec(e.js, "back", rcv.endpoint())
			spec.Pause = tc.pause
			reg := prometheus.NewRegistry()
			const n = 100
			ins := make([]*intent.Intent, n)
			for i := range ins {
				ins[i] = sessionRevoked(idN("back", i))
			}
			e.publishMany(ins)
			e.run(Config{Concurrency: 16, Receivers: []Receiver{spec}}, e.js, reg)
			eventually(t, 10*time.Second, "paused", func() bool { return e.consumerInfo("back").Paused })
			time.Sleep(tc.downFor)
			// Come back early in a pause, so that the pause's end cannot
			// explain a quick recovery.
			var info *jetstream.ConsumerInfo
			eventually(t, 30*time.Second, fmt.Sprintf("a pause with at least %v left", tc.minPauseAtBack), func() bool {
				info = e.consumerInfo("back")
				return info.Paused && info.PauseRemaining >= tc.minPauseAtBack
			})
			back := time.Now()
			rcv.down.Store(false)
			eventually(t, tc.pause.ProbeInterval+2*time.Second, "a delivery after coming back", func() bool { return rcv.accepted.Load() > 0 })
			t.Logf("first delivery %v after coming back (pause had %v left)", time.Since(back).Round(time.Millisecond), info.PauseRemaining.Round(time.Millisecond))
			eventually(t, 20*time.Second, "every intent delivered", func() bool { return e.intentsLeft() == 0 })
			if dls := e.deadLetters(); len(dls) != 0 {
				t.Fatalf("%d dead letters, want 0", len(dls))
			}
			if ok := metricWith(t, reg, "setrelay_receiver_probe_total", map[string]string{"receiver": "back", "result": "ok"}); ok < 1 {
				t.Fatalf("probe ok count %v, want at least 1", ok)
			}
			if st, _ := receiverState(t, reg, "back"); st != "ok" {
				t.Fatalf("state %s after recovery", st)
			}
		})
	}
}

// TestOneProbePerIntervalAcrossProcesses: three processes serving a receiver
// that stays down send it at most one probe per probe interval between
// them, for as long as the (long) pause lasts.
func TestOneProbePerIntervalAcrossProcesses(t *testing.T) {
	e := newEnv(t, 30*time.Second, "down")
	rcv := newSwitchable(t, 0)
	pol := PausePolicy{Threshold: 5, Initial: time.Minute, Max: time.Minute, ProbeInterval: 400 * time.Millisecond}
	ins := make([]*intent.Intent, 200)
	for i := range ins {
		ins[i] = sessionRevoked(idN("down", i))
	}
	e.publishMany(ins)
	regs := make([]*prometheus.Registry, 3)
	for i := range regs {
		regs[i] = prometheus.NewRegistry()
		js, err := jetstream.New(e.connect())
		if err != nil {
			t.Fatal(err)
		}
		spec := e.spec(js, "down", rcv.endpoint())
		spec.Pause = pol
		e.run(Config{Concurrency: 16, Receivers: []Receiver{spec}}, js, regs[i])
	}
	for i, reg := range regs {
		eventually(t, 10*time.Second, fmt.Sprintf("process %d paused", i), func() bool {
			st, _ := receiverState(t, reg, "down")
			return st == "paused"
		})
	}
	time.Sleep(300 * time.Millisecond) // pushes in flight when it paused end
	before := rcv.requests()
	const watch = 4 * time.Second
	time.Sleep(watch)
	probes := rcv.requests() - before
	t.Logf("%d probes in %v at an interval of %v across 3 processes", probes, watch, pol.ProbeInterval)
	if most := int(watch/pol.ProbeInterval) + 1; probes > most {
		t.Fatalf("%d probes in %v, want at most %d (one per interval)", probes, watch, most)
	}
	if probes < 3 {
		t.Fatalf("%d probes in %v: the paused receiver is hardly probed", probes, watch)
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters, want 0", len(dls))
	}
}

// TestRampUpAfterRecovery: measured at the receiver, requests in flight in
// the first second after a recovery stay at or below Pause.RampStart,
// though the pool could push 32 at once and the backlog is large; later
// they grow.
func TestRampUpAfterRecovery(t *testing.T) {
	e := newEnv(t, 30*time.Second, "ramp")
	rcv := newSwitchable(t, 50*time.Millisecond)
	spec := e.spec(e.js, "ramp", rcv.endpoint())
	spec.Pause = PausePolicy{Threshold: 5, Initial: 30 * time.Second, Max: 30 * time.Second, ProbeInterval: 300 * time.Millisecond, RampStart: 2}
	ins := make([]*intent.Intent, 600)
	for i := range ins {
		ins[i] = sessionRevoked(idN("ramp", i))
	}
	e.publishMany(ins)
	e.run(Config{Concurrency: 32, Receivers: []Receiver{spec}}, e.js, nil)
	eventually(t, 10*time.Second, "paused", func() bool { return e.consumerInfo("ramp").Paused })
	rcv.peakSince()
	rcv.down.Store(false)
	eventually(t, 5*time.Second, "the first delivery", func() bool { return rcv.firstOK.Load() != 0 })
	first := time.Unix(0, rcv.firstOK.Load())
	time.Sleep(time.Until(first.Add(900 * time.Millisecond)))
	early := rcv.peakSince()
	time.Sleep(3 * time.Second)
	later := rcv.peakSince()
	t.Logf("peak in flight: %d in the first second, %d later", early, later)
	if early > 2 {
		t.Fatalf("%d requests in flight in the first second after recovery, want at most the ramp start 2", early)
	}
	if later <= early {
		t.Fatalf("concurrency did not ramp up: peak %d later", later)
	}
	eventually(t, 30*time.Second, "every intent delivered", func() bool { return e.intentsLeft() == 0 })
}

// metricWith is the value of the series of name with exactly these labels.
func metricWith(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return 0
}
