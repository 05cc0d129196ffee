package fleet

import (
	"math"
	"testing"
)

func TestDecide(t *testing.T) {
	limits := map[string]Limits{"r": {Rate: 100, InFlight: 8}}
	cases := []struct {
		name     string
		self     string
		live     []Entry
		size     int
		admitted bool
		rate     float64
		inFlight int
	}{
		{"alone, first read", "a", nil, 1, true, 100, 8},
		{"alone, own entry read back", "a", []Entry{{ID: "a", View: []string{"a"}}}, 1, true, 100, 8},
		{"joiner not yet counted by the others takes nothing", "c",
			[]Entry{{ID: "a", View: []string{"a", "b"}}, {ID: "b", View: []string{"a", "b"}}}, 3, false, 0, 0},
		{"joiner counted by one but not the other takes nothing", "c",
			[]Entry{{ID: "a", View: []string{"a", "b", "c"}}, {ID: "b", View: []string{"a", "b"}}}, 3, false, 0, 0},
		{"joiner counted by all takes its share", "c",
			[]Entry{{ID: "a", View: []string{"a", "b", "c"}}, {ID: "b", View: []string{"a", "b", "c"}}, {ID: "c", View: []string{"a", "b", "c"}}}, 3, true, 100.0 / 3, 2},
		{"remainder goes by id order when everybody agrees", "a",
			[]Entry{{ID: "b", View: []string{"a", "b", "c"}}, {ID: "c", View: []string{"a", "b", "c"}}}, 3, true, 100.0 / 3, 3},
		{"existing member shrinks at once when it sees a joiner", "a",
			[]Entry{{ID: "b", View: []string{"a", "b"}}, {ID: "c", View: []string{"c"}}}, 3, false, 0, 0},
		{"existing member still counted by the others shrinks to floor", "a",
			[]Entry{{ID: "b", View: []string{"a", "b"}}, {ID: "c", View: []string{"a", "c"}}}, 3, true, 100.0 / 3, 2},
		{"a departed member is counted until every view drops it", "a",
			[]Entry{{ID: "b", View: []string{"a", "b", "d"}}}, 3, true, 100.0 / 3, 2},
		{"a departed member dropped by all: grow", "a",
			[]Entry{{ID: "b", View: []string{"a", "b"}}}, 2, true, 50, 4},
		{"an unreadable entry counts and admits nobody", "a",
			[]Entry{{ID: "x"}}, 2, false, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := Decide(c.self, c.live, limits)
			s := p.Shares["r"]
			if p.Size != c.size || p.Admitted != c.admitted || math.Abs(s.Rate-c.rate) > 1e-9 || s.InFlight != c.inFlight {
				t.Fatalf("Decide = size %d admitted %v share %+v; want size %d admitted %v rate %v in_flight %d",
					p.Size, p.Admitted, s, c.size, c.admitted, c.rate, c.inFlight)
			}
		})
	}
}

// TestDecideAgreedSharesSumToTheLimit: when every member advertises the same
// view, the in-flight shares add up to exactly the limit, never more.
func TestDecideAgreedSharesSumToTheLimit(t *testing.T) {
	for n := 1; n <= 10; n++ {
		for limit := 1; limit <= 20; limit++ {
			var ids []string
			for i := range n {
				ids = append(ids, string(rune('a'+i)))
			}
			var live []Entry
			for _, id := range ids {
				live = append(live, Entry{ID: id, View: ids})
			}
			sum := 0
			rate := 0.0
			for _, id := range ids {
				s := Decide(id, live, map[string]Limits{"r": {Rate: float64(limit), InFlight: limit}}).Shares["r"]
				sum += s.InFlight
				rate += s.Rate
			}
			if sum != limit || math.Abs(rate-float64(limit)) > 1e-9 {
				t.Fatalf("n=%d limit=%d: in-flight shares sum to %d, rates to %v", n, limit, sum, rate)
			}
		}
	}
}

func TestFallback(t *testing.T) {
	limits := map[string]Limits{"r": {Rate: 90, InFlight: 9}, "s": {Rate: 10}}
	cur := map[string]Limits{"r": {Rate: 30, InFlight: 3}, "s": {Rate: 0}}
	fb := Fallback(cur, 3, limits)
	if fb["r"] != (Limits{Rate: 30, InFlight: 3}) || fb["s"] != (Limits{}) {
		t.Fatalf("fallback of a 3-member share = %+v; want the share unchanged and a joiner's zero kept", fb)
	}
	// A member that last saw itself alone keeps half, never the full limit.
	fb = Fallback(map[string]Limits{"r": {Rate: 90, InFlight: 9}}, 1, map[string]Limits{"r": {Rate: 90, InFlight: 9}})
	if fb["r"] != (Limits{Rate: 45, InFlight: 4}) {
		t.Fatalf("fallback of a lone member = %+v; want half the limit", fb["r"])
	}
}
