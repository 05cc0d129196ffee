package fleet_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/fleet"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// running is a member with its heartbeat loop.
type running struct {
	m      *fleet.Member
	cancel context.CancelFunc
	done   chan struct{}
	reg    *prometheus.Registry
	logs   *observer.ObservedLogs
}

func (r *running) stop() { r.cancel(); <-r.done }

// TestMembersNeverOvercommit joins three members one after another, kills
// one (its loop stops, its entry is left to expire) and lets one leave
// cleanly, sampling every member's share all along: the shares never add up
// to more than the limit, and each change ends with the limit fully used.
func TestMembersNeverOvercommit(t *testing.T) {
	env := testenv.StartJetStream(t, queue.Config{})
	limits := map[string]fleet.Limits{"r": {Rate: 90, InFlight: 8}}
	const ttl, hb = 1500 * time.Millisecond, 150 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	var members []*running
	// The log of events and of the first violations tells which change an
	// overcommit followed, and which member's plan caused it.
	start := time.Now()
	event := func(what string) { t.Logf("+%v %s", time.Since(start).Round(time.Millisecond), what) }
	join := func() *running {
		reg := prometheus.NewRegistry()
		core, logs := observer.New(zap.InfoLevel)
		m, err := fleet.Join(ctx, env.JS, fleet.Options{Limits: limits, TTL: ttl, Heartbeat: hb, Log: zap.New(core), Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		r := &running{m: m, cancel: rcancel, done: make(chan struct{}), reg: reg, logs: logs}
		go func() { defer close(r.done); m.Run(rctx) }()
		mu.Lock()
		members = append(members, r)
		mu.Unlock()
		return r
	}
	drop := func(r *running) {
		mu.Lock()
		defer mu.Unlock()
		for i, x := range members {
			if x == r {
				members = append(members[:i], members[i+1:]...)
			}
		}
	}
	// The sampler checks the invariant every few milliseconds.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var violations []string
	sampled := make(chan struct{})
	// The sampler logs, so it must be done before the test is, even one
	// that fails early.
	defer func() { stopSampling(); <-sampled }()
	go func() {
		defer close(sampled)
		for sampleCtx.Err() == nil {
			mu.Lock()
			var rate float64
			var inFlight int
			var seen []string
			for _, r := range members {
				s := r.m.Shares()["r"]
				p := r.m.Plan()
				seen = append(seen, fmt.Sprintf("%s %+v (fleet size %d, admitted %v, members %v)", short(r.m.ID()), s, p.Size, p.Admitted, shorts(p.Members)))
				rate += s.Rate
				inFlight += s.InFlight
			}
			mu.Unlock()
			if rate > 90+1e-6 || inFlight > 8 {
				if len(violations) < 3 {
					event(fmt.Sprintf("shares over the limit: %s", strings.Join(seen, "; ")))
				}
				violations = append(violations, time.Now().Format("15:04:05.000"))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	// waitFor waits until the live members' shares are want each.
	waitFor := func(what string, within time.Duration, want ...fleet.Limits) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			mu.Lock()
			ok := len(members) == len(want)
			for i, r := range members {
				if ok && r.m.Shares()["r"].InFlight != want[i].InFlight {
					ok = false
				}
				if ok && (r.m.Shares()["r"].Rate-want[i].Rate > 1e-6 || want[i].Rate-r.m.Shares()["r"].Rate > 1e-6) {
					ok = false
				}
			}
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				var got []fleet.Limits
				for _, r := range members {
					got = append(got, r.m.Shares()["r"])
				}
				t.Fatalf("%s: shares %+v after %v; want %+v", what, got, within, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a := join()
	event("a joined as " + short(a.m.ID()))
	waitFor("alone", 2*time.Second, fleet.Limits{Rate: 90, InFlight: 8})
	b := join()
	event("b joined as " + short(b.m.ID()))
	waitFor("two", 3*time.Second, fleet.Limits{Rate: 45, InFlight: 4}, fleet.Limits{Rate: 45, InFlight: 4})
	c := join()
	event("c joined as " + short(c.m.ID()))
	// 8 over three: the two lowest ids get 3, the other 2; which is which
	// depends on the random ids, so check the sum and the rates.
	deadline := time.Now().Add(3 * time.Second)
	for {
		sum := a.m.Shares()["r"].InFlight + b.m.Shares()["r"].InFlight + c.m.Shares()["r"].InFlight
		if sum == 8 && c.m.Shares()["r"].Rate == 30 && a.m.Shares()["r"].Rate == 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("three members did not settle: %+v %+v %+v", a.m.Shares(), b.m.Shares(), c.m.Shares())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// "Kill" c: its loop stops and its entry stays until the TTL expires.
	// It stops pushing (a killed process does), so drop it from the sum.
	killed := time.Now()
	c.stop()
	drop(c)
	event("c killed")
	// Until its entry expires, a and b must keep counting it.
	time.Sleep(ttl / 2)
	if s := a.m.Shares()["r"]; s.Rate != 30 {
		t.Fatalf("a grew to %+v %v after c was killed, before c's entry could expire (TTL %v)", s, time.Since(killed), ttl)
	}
	waitFor("after c's TTL", ttl+2*time.Second, fleet.Limits{Rate: 45, InFlight: 4}, fleet.Limits{Rate: 45, InFlight: 4})
	event("c's share reclaimed")
	t.Logf("killed member's share reclaimed after %v (TTL %v)", time.Since(killed).Round(10*time.Millisecond), ttl)

	// b leaves cleanly: a takes everything without waiting for a TTL. b
	// stops pushing before it leaves (relay leaves after its pool has
	// stopped), so it drops out of the sum before its entry is deleted:
	// dropped after, a that grew at once would be summed with b's stale
	// share for a moment, an overcommit of the test's making.
	b.stop()
	drop(b)
	if err := b.m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	event("b left")
	left := time.Now()
	waitFor("after b left", ttl, fleet.Limits{Rate: 90, InFlight: 8})
	t.Logf("departed member's share taken after %v", time.Since(left).Round(10*time.Millisecond))

	stopSampling()
	<-sampled
	if len(violations) > 0 {
		t.Fatalf("shares exceeded the limit at %d samples, first at %s", len(violations), violations[0])
	}

	// The log says who is in the fleet and what this process's share is;
	// the metrics say the same.
	if n := a.logs.FilterMessage("fleet shares").Len(); n < 3 {
		t.Fatalf("a logged its shares %d times; want one per change (at least 3)", n)
	}
	if got := gauge(t, a.reg, "setrelay_fleet_rate_share"); got != 90 {
		t.Fatalf("setrelay_fleet_rate_share = %v, want 90", got)
	}
	if got := gauge(t, a.reg, "setrelay_fleet_members"); got != 1 {
		t.Fatalf("setrelay_fleet_members = %v, want 1", got)
	}
	a.stop()
}

// gauge reads the single series of a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single series of %s", name)
	return 0
}

// short is enough of a member id to tell the members of a test apart.
func short(id string) string { return id[:6] }

func shorts(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return out
}
