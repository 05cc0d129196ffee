package receiver

import (
	"math/rand/v2"
	"sync"
)

// faultDice draws the per-request fault decisions. Every request draws the
// same three values in the same order, so the i-th request always gets the
// same decision for a given seed, whatever the rates.
type faultDice struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func newFaultDice(seed uint64) *faultDice {
	// The second PCG word is a fixed odd constant so a seed of 0 is as good
	// as any other.
	return &faultDice{rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

type faultDecision struct {
	hang, tooMany, fail bool
}

// decide applies the rates; precedence is hang, then 429, then 500.
func (d *faultDice) decide(hangRate, rate429, failRate float64) faultDecision {
	d.mu.Lock()
	h, t, f := d.rng.Float64(), d.rng.Float64(), d.rng.Float64()
	d.mu.Unlock()
	return faultDecision{hang: h < hangRate, tooMany: t < rate429, fail: f < failRate}
}
