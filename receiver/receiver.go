package receiver

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Receiver is the development SSF receiver. It is safe for concurrent use.
type Receiver struct {
	cfg      Config
	log      *zap.Logger
	start    time.Time
	tokens   *tokenStore
	verifier *verifier
	dice     *faultDice
	stats    *counters
	forced   atomic.Bool // SetDown
	closing  chan struct{}
	closeMu  sync.Once

	mu      sync.Mutex
	records map[string]*Record
	order   []string        // jtis in arrival order, for eviction and Accepted
	warned  map[string]bool // warning kinds already logged
}

// New checks cfg, loads the verification keys (a JWKS URL is fetched on
// first use, so the transmitter may start later) and returns a Receiver. A
// nil logger logs nothing.
func New(cfg Config, log *zap.Logger) (*Receiver, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("receiver config: %w", err)
	}
	keys, err := newKeySource(&cfg)
	if err != nil {
		return nil, fmt.Errorf("receiver keys: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	start := cfg.Now()
	return &Receiver{
		cfg:      cfg,
		log:      log,
		start:    start,
		tokens:   &tokenStore{lifetime: cfg.TokenLifetime, now: cfg.Now},
		verifier: &verifier{cfg: &cfg, keys: keys},
		dice:     newFaultDice(cfg.Seed),
		stats:    newCounters(start),
		records:  make(map[string]*Record),
		warned:   make(map[string]bool),
		closing:  make(chan struct{}),
	}, nil
}

// Handler serves POST /events, POST /token, GET /stats and GET /healthz.
func (r *Receiver) Handler() http.Handler {
	mux := http.NewServeMux()
	// Registered without a method so that wrong methods reach the handlers
	// and get counted and answered like a real receiver would.
	mux.HandleFunc("/events", r.serveEvents)
	mux.HandleFunc("/token", r.serveToken)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r.Stats())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// Stats returns a snapshot of the counters.
func (r *Receiver) Stats() Stats { return r.stats.snapshot() }

// Accepted returns the accepted SETs still remembered, oldest first.
func (r *Receiver) Accepted() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Record, 0, len(r.order))
	for _, jti := range r.order {
		out = append(out, r.records[jti].clone())
	}
	return out
}

// Lookup returns the accepted SET with this jti, if remembered.
func (r *Receiver) Lookup(jti string) (Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.records[jti]
	if !ok {
		return Record{}, false
	}
	return rec.clone(), true
}

// SetDown forces an outage on (every request answered 503) or off, on top
// of DownAfter/DownFor. Tests and the demo use it to stage outages on cue.
func (r *Receiver) SetDown(down bool) { r.forced.Store(down) }

// RevokeToken revokes the current access token, as RevokeTokenEvery does,
// so the transmitter's next push is refused with 401. It reports whether a
// token was current.
func (r *Receiver) RevokeToken() bool {
	if r.tokens.revoke() {
		r.stats.fault(FaultRevokeToken)
		return true
	}
	return false
}

// Close ends every injected hang and latency now (those requests are
// answered 503), so that http.Server.Shutdown need not wait up to MaxHang.
// The receiver keeps serving; later hangs end at once. Close is idempotent.
func (r *Receiver) Close() {
	r.closeMu.Do(func() { close(r.closing) })
}

// outage answers 503 and returns true while the receiver is down.
func (r *Receiver) outage(w http.ResponseWriter) bool {
	down, remaining := r.down()
	if !down {
		return false
	}
	r.stats.fault(FaultDown)
	if remaining > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int64(math.Ceil(remaining.Seconds()))))
	}
	http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	return true
}

// down reports an outage and, for a scheduled one, how long it has left.
func (r *Receiver) down() (bool, time.Duration) {
	if r.forced.Load() {
		return true, 0
	}
	if r.cfg.DownFor <= 0 {
		return false, 0
	}
	since := r.cfg.Now().Sub(r.start)
	if since >= r.cfg.DownAfter && since < r.cfg.DownAfter+r.cfg.DownFor {
		return true, r.cfg.DownAfter + r.cfg.DownFor - since
	}
	return false, 0
}
