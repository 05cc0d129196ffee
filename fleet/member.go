package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Bucket is the JetStream key-value bucket of fleet members.
const Bucket = "SETRELAY_FLEET"

// streamName and keyPrefix are the bucket's stream and the subject prefix of
// its keys, as JetStream names them for a key-value bucket.
const (
	streamName = "KV_" + Bucket
	keyPrefix  = "$KV." + Bucket + "."
)

// DefaultTTL is how long a member's entry outlives its last heartbeat when
// this member creates the bucket. A killed member's share is reclaimed
// within about TTL plus two heartbeats.
const DefaultTTL = 4 * time.Second

// Options configure a Member.
type Options struct {
	// Limits are the fleet-wide limits by receiver name; a receiver with
	// neither limit need not be listed.
	Limits map[string]Limits
	// Replicas of the bucket when this member creates it (default 1).
	Replicas int
	// TTL of the bucket when this member creates it (default DefaultTTL).
	// An existing bucket keeps its own: every member must agree on it.
	TTL time.Duration
	// Heartbeat is how often the member refreshes its entry and re-reads
	// the others (default a quarter of the bucket's TTL).
	Heartbeat time.Duration
	Log       *zap.Logger
	// Registerer receives the fleet metrics; nil registers nothing.
	Registerer prometheus.Registerer
}

// Member is this process's place in the fleet. Join makes one; Run keeps it
// alive; Leave removes it.
type Member struct {
	kv        jetstream.KeyValue
	stream    jetstream.Stream // the bucket's stream, for the snapshot of its keys
	log       *zap.Logger
	limits    map[string]Limits
	heartbeat time.Duration
	ttl       time.Duration // the bucket's, after which an unrefreshed entry is gone
	metrics   *metrics
	rates     map[string]*RateLimiter
	gates     map[string]*Gate

	mu       sync.Mutex
	entry    Entry
	plan     Plan
	shares   map[string]Limits
	lastSize int
	failing  bool
	// written is when the last successful write of the entry was issued:
	// the server stored it no earlier, so the entry lives at least until
	// written plus the TTL.
	written time.Time
	// orphaned is true while the entry may have expired: the share is zero.
	orphaned bool
}

// Join binds to (or creates) the bucket, reads the fleet and announces this
// process. Every share starts at zero and stays there until the other
// members have made room for it.
func Join(ctx context.Context, js jetstream.JetStream, o Options) (*Member, error) {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	kv, err := bucket(ctx, js, o)
	if err != nil {
		return nil, err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("fleet: bucket %s: %w", Bucket, err)
	}
	stream, err := js.Stream(ctx, streamName)
	if err != nil {
		return nil, fmt.Errorf("fleet: bucket %s: %w", Bucket, err)
	}
	hb := o.Heartbeat
	if hb <= 0 {
		hb = st.TTL() / 4
	}
	if hb <= 0 {
		return nil, fmt.Errorf("fleet: bucket %s has no TTL, so a killed member would be counted for ever; delete it (nats kv del %s) and restart", Bucket, Bucket)
	}
	met, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("fleet: member id: %w", err)
	}
	host, _ := os.Hostname()
	m := &Member{
		kv: kv, stream: stream, log: o.Log, limits: o.Limits, heartbeat: hb, ttl: st.TTL(), metrics: met,
		rates: map[string]*RateLimiter{}, gates: map[string]*Gate{},
		entry:    Entry{ID: hex.EncodeToString(raw[:]), Host: host, PID: os.Getpid(), Started: time.Now().UTC()},
		shares:   map[string]Limits{},
		lastSize: 1,
	}
	for name, l := range o.Limits {
		if l.Rate > 0 {
			m.rates[name] = NewRateLimiter(0, nil)
		}
		if l.InFlight > 0 {
			m.gates[name] = NewGate(0)
		}
		m.shares[name] = Limits{}
	}
	// Announce before the first read, with no share: of two processes
	// joining at once, the one whose announcement is stored second then
	// reads the other's, and waits to be admitted by it.
	if err := m.announce(ctx); err != nil {
		return nil, err
	}
	if err := m.cycle(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// announce writes the member's entry with its current view.
func (m *Member) announce(ctx context.Context) error {
	m.mu.Lock()
	if m.entry.View == nil {
		m.entry.View = []string{m.entry.ID}
	}
	data, err := json.Marshal(m.entry)
	m.mu.Unlock()
	if err != nil {
		return fmt.Errorf("fleet: encode entry: %w", err)
	}
	issued := time.Now()
	if _, err := m.kv.Put(ctx, m.entry.ID, data); err != nil {
		return fmt.Errorf("fleet: heartbeat: %w", err)
	}
	m.mu.Lock()
	m.written = issued
	m.mu.Unlock()
	return nil
}

// bucket binds to the members bucket, creating it when missing.
func bucket(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("fleet: bucket %s: %w", Bucket, err)
	}
	ttl := o.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "setrelay fleet members: receiver limits are divided among the live entries",
		History:     1,
		TTL:         ttl,
		Replicas:    max(o.Replicas, 1),
		// File storage, although the entries live seconds: a memory
		// bucket emptied by a restart of every NATS node would let members
		// that read it before the others re-announce see themselves alone
		// and each take the whole limit.
		Storage: jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Another member created it meanwhile.
		kv, err = js.KeyValue(ctx, Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: create bucket %s: %w", Bucket, err)
	}
	return kv, nil
}

// ID is this member's id in the bucket.
func (m *Member) ID() string { return m.entry.ID }

// Heartbeat is how often the member refreshes its entry.
func (m *Member) Heartbeat() time.Duration { return m.heartbeat }

// RateLimiter is the limiter holding this member's share of receiver's
// rate_limit, or nil when the receiver has none.
func (m *Member) RateLimiter(receiver string) *RateLimiter { return m.rates[receiver] }

// Gate is the gate holding this member's share of receiver's
// max_in_flight, or nil when the receiver has none.
func (m *Member) Gate(receiver string) *Gate { return m.gates[receiver] }

// Plan is the member's last plan.
func (m *Member) Plan() Plan {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.plan
}

// Shares are the member's current shares by receiver.
func (m *Member) Shares() map[string]Limits {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Limits, len(m.shares))
	for k, v := range m.shares {
		out[k] = v
	}
	return out
}

// Run refreshes the member every heartbeat until ctx is done. Failures to
// reach the bucket are logged and the member falls back (see Fallback);
// Run itself returns only when ctx is done.
func (m *Member) Run(ctx context.Context) {
	t := time.NewTicker(m.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, m.heartbeat)
		err := m.cycle(cctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			continue
		}
		m.fallback(err)
		var rerr *readError
		if !errors.As(err, &rerr) {
			continue
		}
		// The read failed, but the write may not: refresh the entry
		// anyway, its view and shares unchanged but for the fallback.
		// Without it the entry would expire while this member keeps
		// pushing at its fallback share, and the others, no longer
		// seeing it, would grow into that share: the fleet would push
		// more than the limit. Its own timeout, since a read that timed
		// out has used up the cycle's.
		m.mu.Lock()
		m.entry.Shares = m.sharesLocked()
		m.mu.Unlock()
		wctx, cancel := context.WithTimeout(ctx, m.heartbeat)
		if werr := m.announce(wctx); werr != nil && ctx.Err() == nil {
			m.fallback(werr)
		}
		cancel()
	}
}

// readError is a failure to read the bucket, as opposed to one to write
// this member's entry.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// Leave deletes the member's entry so the others take its share at once.
// Call it after the last push.
func (m *Member) Leave(ctx context.Context) error {
	if err := m.kv.Delete(ctx, m.entry.ID); err != nil {
		return fmt.Errorf("fleet: leave: %w", err)
	}
	m.log.Info("left the fleet", zap.String("member", m.entry.ID))
	return nil
}

// cycle reads the fleet, applies this member's shares and writes its entry,
// advertising the new membership only once it is applied.
func (m *Member) cycle(ctx context.Context) error {
	live, err := m.read(ctx)
	if err != nil {
		return &readError{err}
	}
	plan := Decide(m.entry.ID, live, m.limits)
	m.apply(plan.Shares)

	m.mu.Lock()
	if m.drainedLocked() {
		m.entry.View = plan.Members
	}
	m.entry.Shares = plan.Shares
	m.mu.Unlock()
	if err := m.announce(ctx); err != nil {
		return err
	}

	m.mu.Lock()
	changed := !slices.Equal(plan.Members, m.plan.Members) || plan.Size != m.plan.Size ||
		plan.Admitted != m.plan.Admitted || m.failing || !sameShares(plan.Shares, m.plan.Shares)
	m.plan, m.lastSize, m.failing, m.orphaned = plan, plan.Size, false, false
	m.mu.Unlock()
	m.metrics.observe(plan, m.limits)
	if changed {
		m.logPlan(plan, live)
	}
	return nil
}

// drainedLocked reports whether every gate holds no more than its limit,
// the condition for advertising a view.
func (m *Member) drainedLocked() bool {
	for _, g := range m.gates {
		if g.Held() > g.Limit() {
			return false
		}
	}
	return true
}

func (m *Member) apply(shares map[string]Limits) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, s := range shares {
		if r := m.rates[name]; r != nil && r.Rate() != s.Rate {
			r.SetRate(s.Rate)
		}
		if g := m.gates[name]; g != nil && g.Limit() != s.InFlight {
			g.SetLimit(s.InFlight)
		}
		m.shares[name] = s
	}
}

func (m *Member) sharesLocked() map[string]Limits {
	out := make(map[string]Limits, len(m.shares))
	for k, v := range m.shares {
		out[k] = v
	}
	return out
}

// fallback shrinks to the safe share while the bucket is out of reach.
//
// Once the entry may have expired, that share is zero. The others, no
// longer seeing this member, divide the whole limit among themselves, so any
// share at all here, even one of a fleet counted one larger than last seen,
// would push the fleet over the limit. The entry lives at least until its
// last successful write was issued plus the TTL; this member drops to zero
// two heartbeats before that, since the next check may come a failed write
// and a failed read later, each bounded by a heartbeat (with the default
// heartbeat of a quarter of the TTL, a member whose reads time out but whose
// writes succeed checks about a heartbeat after its last write, and keeps
// its fallback share). The others grow only after reading the bucket once
// the entry has expired, later still. A successful cycle
// then reads whether the others still count it (Decide admits it only if
// they do) and gives it its share back.
func (m *Member) fallback(cause error) {
	m.mu.Lock()
	current := m.sharesLocked()
	first := !m.failing
	m.failing = true
	size := m.lastSize
	orphan := time.Since(m.written) >= m.ttl-2*m.heartbeat
	firstOrphan := orphan && !m.orphaned
	m.orphaned = orphan
	m.mu.Unlock()
	fb := Fallback(current, size, m.limits)
	if orphan {
		for name := range fb {
			fb[name] = Limits{}
		}
	}
	m.apply(fb)
	m.metrics.failures.Inc()
	m.metrics.shares(fb, m.limits)
	if first {
		m.log.Warn("fleet coordination unreachable; keeping at most the limit divided by the last known fleet size",
			zap.Int("last_fleet_size", size), zap.Any("shares", fb), zap.Error(cause))
	}
	if firstOrphan {
		m.log.Warn("fleet entry not refreshed for most of its TTL; the others may take this process's share, so it pushes nothing until it can write its entry again",
			zap.Duration("ttl", m.ttl), zap.Error(cause))
	}
}

// read returns every unexpired entry. Expired entries are gone from the
// bucket (its TTL is the stream's MaxAge), so the server, not this
// process's clock, decides who is alive.
//
// The keys come from the stream's per-subject state, one snapshot the
// stream leader takes at once, and each value from a get of that key. A
// KV watcher is not used: it ends its initial replay when a delivered
// message reports no pending messages, and under concurrent puts (every
// member's heartbeat) that count can reach zero before the replay is
// complete (nats-io/nats-server#4824, nats-io/nats.py#995). The reader then
// misses a live member, believes the fleet smaller than it is and takes
// that member's share too. A key in the snapshot whose get finds nothing
// expired or was deleted meanwhile; an entry written after the snapshot
// belongs to a joiner, which takes no share until this member admits it.
func (m *Member) read(ctx context.Context) ([]Entry, error) {
	info, err := m.stream.Info(ctx, jetstream.WithSubjectFilter(keyPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("fleet: read members: %w", err)
	}
	keys := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if key, ok := strings.CutPrefix(subj, keyPrefix); ok {
			keys = append(keys, key)
		}
	}
	sort.Strings(keys)
	out := make([]Entry, 0, len(keys))
	for _, key := range keys {
		kve, err := m.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("fleet: read member %s: %w", key, err)
		}
		var e Entry
		if err := json.Unmarshal(kve.Value(), &e); err != nil || e.ID != kve.Key() {
			// Written by something else: counting it as a member
			// that has applied nothing keeps everybody safe.
			e = Entry{ID: kve.Key()}
		}
		out = append(out, e)
	}
	return out, nil
}

func (m *Member) logPlan(p Plan, live []Entry) {
	hosts := make(map[string]string, len(live))
	for _, e := range live {
		hosts[e.ID] = fmt.Sprintf("%s (%s pid %d)", e.ID, e.Host, e.PID)
	}
	members := make([]string, 0, len(p.Members))
	for _, id := range p.Members {
		if h, ok := hosts[id]; ok {
			members = append(members, h)
		} else {
			members = append(members, id)
		}
	}
	names := make([]string, 0, len(p.Shares))
	for n := range p.Shares {
		names = append(names, n)
	}
	sort.Strings(names)
	fields := []zap.Field{
		zap.String("member", m.entry.ID), zap.Strings("members", members),
		zap.Int("fleet_size", p.Size), zap.Bool("admitted", p.Admitted),
	}
	for _, n := range names {
		s, l := p.Shares[n], m.limits[n]
		fields = append(fields, zap.Dict("receiver."+n,
			zap.Float64("rate_share", s.Rate), zap.Float64("rate_limit", l.Rate),
			zap.Int("in_flight_share", s.InFlight), zap.Int("max_in_flight", l.InFlight)))
	}
	m.log.Info("fleet shares", fields...)
}

func sameShares(a, b map[string]Limits) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
