package bench

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
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
	if t != nil || s.next != nil {
		body, _ = io.ReadAll(r.Body)
	} else {
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
	parts := strings.SplitN(string(compact), ".", 3)
	if len(parts) != 3 {
		t.miss()
		return
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.miss()
		return
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.miss()
		return
	}
	i, ok := t.index[c.JTI]
	if !ok {
		t.miss()
		return
	}
	t.received[i].CompareAndSwap(0, at.UnixNano())
}

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
