package receiver

import (
	"encoding/json"
	"maps"
	"strconv"
	"sync"
	"time"
)

// Fault kinds, the keys of Stats.Faults.
const (
	FaultDown        = "down"         // 503 during an outage
	FaultLatency     = "latency"      // delay added
	FaultHang        = "hang"         // request held
	Fault429         = "429"          // 429 with Retry-After
	Fault500         = "500"          // 500
	FaultRejectTxn   = "reject_txn"   // 400 invalid_request by RejectTxnPrefix
	FaultRevokeToken = "revoke_token" // current token revoked by RevokeTokenEvery
)

// Stats is a snapshot of the receiver's counters, served as JSON on /stats.
// Maps are never nil, so the JSON always has every member.
type Stats struct {
	// Requests counts requests to /events, whatever their outcome.
	Requests int64 `json:"requests"`
	// Accepted counts unique SETs accepted (202).
	Accepted int64 `json:"accepted"`
	// Duplicates counts re-sent SETs with claims identical to an accepted
	// one, also answered 202.
	Duplicates int64 `json:"duplicates"`
	// Violations counts problems by kind (the V* constants). One rejected
	// SET may count several.
	Violations map[string]int64 `json:"violations"`
	// Warnings counts, by kind (the W* constants), what unique SETs did
	// that a specification says they should not, or that does not match the
	// CAEP, RISC or SSF event catalogue. Under Config.Strict such a SET is
	// rejected, and its warnings are counted here and in Violations.
	Warnings map[string]int64 `json:"warnings"`
	// Rejections counts error answers carrying an RFC 8935 err, by err code.
	Rejections map[string]int64 `json:"rejections"`
	// Responses counts /events answers by HTTP status.
	Responses map[string]int64 `json:"responses"`
	// Events counts unique accepted SETs by event-type URI.
	Events map[string]int64 `json:"events"`
	// TokenRequests counts requests to /token.
	TokenRequests int64 `json:"token_requests"`
	// TokensIssued counts tokens minted (a token handed out again within its
	// lifetime is not counted twice).
	TokensIssued int64 `json:"tokens_issued"`
	// TokenErrors counts /token error answers by OAuth error code.
	TokenErrors map[string]int64 `json:"token_errors"`
	// Faults counts injected faults by kind (the Fault* constants).
	Faults map[string]int64 `json:"faults"`
	// RecordsEvicted counts accepted SETs forgotten because MaxRecords was
	// reached.
	RecordsEvicted int64 `json:"records_evicted"`
	// Since is when the receiver was created.
	Since time.Time `json:"since"`
}

// counters is the mutable side of Stats.
type counters struct {
	mu sync.Mutex
	s  Stats
}

func newCounters(since time.Time) *counters {
	return &counters{s: Stats{
		Violations:  map[string]int64{},
		Warnings:    map[string]int64{},
		Rejections:  map[string]int64{},
		Responses:   map[string]int64{},
		Events:      map[string]int64{},
		TokenErrors: map[string]int64{},
		Faults:      map[string]int64{},
		Since:       since,
	}}
}

func (c *counters) update(f func(s *Stats)) {
	c.mu.Lock()
	f(&c.s)
	c.mu.Unlock()
}

func (c *counters) tokenRequest() { c.update(func(s *Stats) { s.TokenRequests++ }) }
func (c *counters) tokenIssued()  { c.update(func(s *Stats) { s.TokensIssued++ }) }
func (c *counters) tokenError(code string) {
	c.update(func(s *Stats) { s.TokenErrors[code]++ })
}
func (c *counters) fault(kind string) { c.update(func(s *Stats) { s.Faults[kind]++ }) }
func (c *counters) request()          { c.update(func(s *Stats) { s.Requests++ }) }
func (c *counters) response(status int) {
	c.update(func(s *Stats) { s.Responses[strconv.Itoa(status)]++ })
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.s
	out.Violations = maps.Clone(c.s.Violations)
	out.Warnings = maps.Clone(c.s.Warnings)
	out.Rejections = maps.Clone(c.s.Rejections)
	out.Responses = maps.Clone(c.s.Responses)
	out.Events = maps.Clone(c.s.Events)
	out.TokenErrors = maps.Clone(c.s.TokenErrors)
	out.Faults = maps.Clone(c.s.Faults)
	return out
}

// Record is one accepted SET, kept for duplicate detection and for tests.
type Record struct {
	JTI        string          `json:"jti"`
	Claims     json.RawMessage `json:"claims"` // the JWS payload, byte for byte
	Alg        string          `json:"alg"`
	KeyID      string          `json:"kid,omitempty"`
	Events     []string        `json:"events"`
	Txn        string          `json:"txn,omitempty"`
	ReceivedAt time.Time       `json:"received_at"`
	// Duplicates counts identical re-sends after the first acceptance.
	Duplicates int `json:"duplicates"`
}

func (r Record) clone() Record {
	r.Claims = append(json.RawMessage(nil), r.Claims...)
	r.Events = append([]string(nil), r.Events...)
	return r
}
