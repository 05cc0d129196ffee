package fleet

import (
	"context"
	"math"
	"sync"
	"time"
)

// burstSeconds is how much of a second's share a RateLimiter may save up:
// a tenth, so that every member's burst together stays within 10 % of the
// limit over a five-second window.
const burstSeconds = 0.1

// RateLimiter is a token bucket whose rate can change at any time and whose
// waiters reserve nothing: unlike golang.org/x/time/rate, a lowered rate
// applies to every push from the moment it is set, which is what lets a
// member promise the rest of the fleet that it has shrunk. Waiters take turns,
// so only one of them sleeps on the bucket at a time. A zero rate blocks
// every waiter until the rate rises.
type RateLimiter struct {
	now  func() time.Time
	turn chan struct{} // holds a token while a waiter has the turn

	mu      sync.Mutex
	rate    float64 // tokens per second
	burst   float64
	tokens  float64
	last    time.Time
	changed chan struct{} // closed and replaced when the rate changes
}

// NewRateLimiter returns a limiter at rate r (per second), with a tenth of
// a second's burst, starting empty.
func NewRateLimiter(r float64, now func() time.Time) *RateLimiter {
	if now == nil {
		now = time.Now
	}
	l := &RateLimiter{now: now, turn: make(chan struct{}, 1), changed: make(chan struct{}), last: now()}
	l.setLocked(r)
	return l
}

// Rate is the current rate, per second.
func (l *RateLimiter) Rate() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rate
}

// SetRate changes the rate. Tokens earned so far are kept at the old rate,
// up to the new burst.
func (l *RateLimiter) SetRate(r float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refillLocked()
	l.setLocked(r)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *RateLimiter) setLocked(r float64) {
	if r < 0 || math.IsNaN(r) {
		r = 0
	}
	l.rate = r
	l.burst = 0
	if r > 0 {
		l.burst = max(1, r*burstSeconds)
	}
	l.tokens = min(l.tokens, l.burst)
}

func (l *RateLimiter) refillLocked() {
	now := l.now()
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens = min(l.burst, l.tokens+el*l.rate)
	}
	l.last = now
}

// Wait blocks until a token is available and takes it, or returns ctx's
// error.
func (l *RateLimiter) Wait(ctx context.Context) error {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.turn }()
	for {
		l.mu.Lock()
		l.refillLocked()
		if l.tokens >= 1 {
			l.tokens--
			l.mu.Unlock()
			return nil
		}
		changed := l.changed
		var timer *time.Timer
		var fire <-chan time.Time
		if l.rate > 0 {
			d := time.Duration((1 - l.tokens) / l.rate * float64(time.Second))
			timer = time.NewTimer(max(d, time.Millisecond))
			fire = timer.C
		}
		l.mu.Unlock()
		var err error
		select {
		case <-fire:
		case <-changed:
		case <-ctx.Done():
			err = ctx.Err()
		}
		if timer != nil {
			timer.Stop()
		}
		if err != nil {
			return err
		}
	}
}

// Gate bounds concurrent pushes to a limit that can change at any time. A
// lowered limit admits nobody new until enough holders have released.
type Gate struct {
	mu      sync.Mutex
	limit   int
	held    int
	changed chan struct{} // closed and replaced on every release or resize
}

// NewGate returns a gate admitting up to limit holders.
func NewGate(limit int) *Gate {
	return &Gate{limit: max(limit, 0), changed: make(chan struct{})}
}

// Acquire waits for a free slot, or returns ctx's error.
func (g *Gate) Acquire(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.held < g.limit {
			g.held++
			g.mu.Unlock()
			return nil
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release frees a slot taken by Acquire.
func (g *Gate) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held > 0 {
		g.held--
	}
	g.wakeLocked()
}

// SetLimit changes the limit. Holders above a lowered limit keep their
// slots until they release them.
func (g *Gate) SetLimit(limit int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limit = max(limit, 0)
	g.wakeLocked()
}

// Limit and Held report the current limit and holders.
func (g *Gate) Limit() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.limit
}

// Held is the number of slots currently taken.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

func (g *Gate) wakeLocked() {
	close(g.changed)
	g.changed = make(chan struct{})
}
