package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tokenResponse is what the plain receiver's token endpoint answers: one
// token valid for an hour, so the push client fetches it once per run.
var tokenResponse = []byte(`{"access_token":"bench-access-token","token_type":"Bearer","expires_in":3600}`)

// sink is the loopback receiver. By default it is as plain as the
// baseline's (read the body, answer 202), so the receiver's share of the
// process's CPU is the same on both sides; next, when set, is the
// conformance receiver it forwards to instead. A tracker, when set, notes
// when each SET arrived, for the latency phase.
type sink struct {
	next     http.Handler
	accepted atomic.Int64
	tokens   atomic.Int64
	track    atomic.Pointer[tracker]
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/token" {
		s.tokens.Add(1)
		if s.next != nil {
			s.next.ServeHTTP(w, r)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(tokenResponse)
		return
	}
	t := s.track.Load()
	var body []byte
	var bp *[]byte
	switch {
	case s.next != nil:
		body, _ = io.ReadAll(r.Body)
	case t != nil:
		// The latency phase's CPU per SET is compared with the
		// baseline's, whose receiver only discards the body: read it
		// into a pooled buffer so the tracking costs little.
		bp = bodyPool.Get().(*[]byte)
		defer bodyPool.Put(bp)
		buf := bytes.NewBuffer((*bp)[:0])
		_, _ = buf.ReadFrom(r.Body)
		body = buf.Bytes()
		*bp = body[:0]
	default:
		_, _ = io.Copy(io.Discard, r.Body)
	}
	now := time.Now()
	status := http.StatusAccepted
	if s.next != nil {
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		s.next.ServeHTTP(sw, r)
		status = sw.status
	} else {
		w.WriteHeader(http.StatusAccepted)
	}
	if status == http.StatusAccepted {
		s.accepted.Add(1)
		if t != nil {
			t.arrived(body, now)
		}
	}
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// tracker pairs each SET's arrival with its intent's publish time. The
// jti is deterministic from the intent id, so the receiver finds the
// publish time from the SET alone.
type tracker struct {
	index     map[string]int // jti -> intent number, filled before the run
	published []atomic.Int64 // unix ns, by intent number
	received  []atomic.Int64 // unix ns of the first arrival
	count     atomic.Int64   // SETs with a first arrival
	mu        sync.Mutex
	unknown   int
}

func newTracker(jtis []string) *tracker {
	t := &tracker{
		index:     make(map[string]int, len(jtis)),
		published: make([]atomic.Int64, len(jtis)),
		received:  make([]atomic.Int64, len(jtis)),
	}
	for i, j := range jtis {
		t.index[j] = i
	}
	return t
}

func (t *tracker) arrived(compact []byte, at time.Time) {
	// The jti is found in the payload without a JSON decoder: the bench's
	// jtis have no characters JSON escapes, and a wrong guess only counts
	// as a miss, which fails the run.
	_, rest, ok := bytes.Cut(compact, []byte("."))
	payload64, _, ok2 := bytes.Cut(rest, []byte("."))
	if !ok || !ok2 {
		t.miss()
		return
	}
	var buf [2048]byte
	n := base64.RawURLEncoding.DecodedLen(len(payload64))
	if n > len(buf) {
		t.miss()
		return
	}
	payload := buf[:n]
	if _, err := base64.RawURLEncoding.Decode(payload, payload64); err != nil {
		t.miss()
		return
	}
	_, after, ok := bytes.Cut(payload, []byte(`"jti":"`))
	if !ok {
		t.miss()
		return
	}
	jti, _, ok := bytes.Cut(after, []byte(`"`))
	if !ok {
		t.miss()
		return
	}
	i, ok := t.index[string(jti)]
	if !ok {
		t.miss()
		return
	}
	if t.received[i].CompareAndSwap(0, at.UnixNano()) {
		t.count.Add(1)
	}
}

// dump writes "number published_ns latency_ns" per SET (latency 0: never
// arrived) to path.
func (t *tracker) dump(path string) error {
	var b strings.Builder
	first := t.published[0].Load()
	for i := range t.received {
		p, r := t.published[i].Load(), t.received[i].Load()
		lat := int64(0)
		if r != 0 {
			lat = r - p
		}
		fmt.Fprintf(&b, "%d %d %d\n", i, p-first, lat)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("bench: latency dump: %w", err)
	}
	return nil
}

// arrivals is how many distinct SETs arrived.
func (t *tracker) arrivals() int { return int(t.count.Load()) }

func (t *tracker) miss() {
	t.mu.Lock()
	t.unknown++
	t.mu.Unlock()
}

// latencies are the publish-to-202 times of the SETs that arrived.
func (t *tracker) latencies() []time.Duration {
	out := make([]time.Duration, 0, len(t.received))
	for i := range t.received {
		r, p := t.received[i].Load(), t.published[i].Load()
		if r != 0 && p != 0 {
			out = append(out, time.Duration(r-p))
		}
	}
	return out
}
