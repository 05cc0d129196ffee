package fleet

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Limits are one receiver's limits: fleet-wide as configured, or one
// member's share of them. Zero means unlimited in a configuration and
// nothing at all in a share (a limit that is not configured has no share).
type Limits struct {
	Rate     float64 `json:"rate,omitempty"`      // SETs per second
	InFlight int     `json:"in_flight,omitempty"` // concurrent pushes
}

// Entry is what a member keeps in the bucket under its id.
type Entry struct {
	ID      string    `json:"id"`
	Host    string    `json:"host,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Started time.Time `json:"started"`
	// View is the membership this member has applied: its limiters are at
	// or below its share of a fleet of this size.
	View []string `json:"view"`
	// Shares are the member's current shares, for operators reading the
	// bucket (`nats kv get SETRELAY_FLEET <id>`).
	Shares map[string]Limits `json:"shares,omitempty"`
}

// Plan is one member's share of every limit, as Decide computes it from the
// live entries.
type Plan struct {
	// Members is the member's view: every live entry and itself, sorted.
	Members []string
	// Size is the fleet size the limits are divided by: at least
	// len(Members) and every advertised view's size.
	Size int
	// Admitted is false while some other live member has not yet applied a
	// view that includes this one; every share is then zero.
	Admitted bool
	// Agreed is true when every live member advertises Members as its view.
	Agreed bool
	// Shares holds this member's share of each configured receiver limit.
	Shares map[string]Limits
}

// Decide is the one place a member's shares are computed. self is the
// member's id; live are the unexpired entries read from the bucket (self's
// own may be among them); limits are the configured fleet-wide limits by
// receiver.
func Decide(self string, live []Entry, limits map[string]Limits) Plan {
	members := []string{self}
	for _, e := range live {
		if e.ID != self {
			members = append(members, e.ID)
		}
	}
	sort.Strings(members)
	members = slices.Compact(members)

	p := Plan{Members: members, Size: len(members), Admitted: true, Agreed: true}
	for _, e := range live {
		if e.ID == self {
			continue
		}
		p.Size = max(p.Size, len(e.View))
		if !slices.Contains(e.View, self) {
			p.Admitted = false
		}
		if !sameSet(e.View, members) {
			p.Agreed = false
		}
	}
	p.Agreed = p.Agreed && p.Admitted && p.Size == len(members)
	index := slices.Index(members, self)

	p.Shares = make(map[string]Limits, len(limits))
	for name, l := range limits {
		var s Limits
		if p.Admitted {
			if l.Rate > 0 {
				s.Rate = l.Rate / float64(p.Size)
			}
			if l.InFlight > 0 {
				s.InFlight = l.InFlight / p.Size
				// The remainder goes to the first members in id order, which
				// is only consistent when everybody counts the same members.
				if p.Agreed && index < l.InFlight%p.Size {
					s.InFlight++
				}
			}
		}
		p.Shares[name] = s
	}
	return p
}

// Fallback is the share a member keeps while it cannot reach the bucket:
// no more than it has now, nor than the limit divided by the last fleet size
// it saw; a member that last saw itself alone counts two, since a process it
// cannot see may have joined meanwhile.
func Fallback(current map[string]Limits, lastSize int, limits map[string]Limits) map[string]Limits {
	n := max(lastSize, 2)
	out := make(map[string]Limits, len(limits))
	for name, l := range limits {
		c := current[name]
		var s Limits
		if l.Rate > 0 {
			s.Rate = math.Min(c.Rate, l.Rate/float64(n))
		}
		if l.InFlight > 0 {
			s.InFlight = min(c.InFlight, l.InFlight/n)
		}
		out[name] = s
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}
