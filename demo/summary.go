package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// Summary is the outcome of a demo run. Its JSON form is what
// `setrelay demo --json` prints.
type Summary struct {
	// Intents is the number of good intents published; BadIntents the
	// number that must be dead-lettered.
	Intents    int `json:"intents"`
	BadIntents int `json:"bad_intents"`
	// Delivered counts SETs the relay got a 2xx for
	// (setrelay_deliveries_total{outcome="delivered"}).
	Delivered int `json:"delivered"`
	// Verified counts good intents whose SET the receiver accepted after
	// checking signature and claims, found by their deterministic jti.
	Verified int `json:"verified"`
	// ReceiverAccepted is the receiver's own count of unique accepted SETs;
	// Duplicates its count of identical re-sends (at-least-once delivery).
	ReceiverAccepted int64 `json:"receiver_accepted"`
	Duplicates       int64 `json:"duplicates"`
	// Violations are the receiver's findings by kind; empty when every SET
	// passed every check.
	Violations map[string]int64 `json:"violations"`
	// Warnings are the receiver's warnings by kind (a broken SHOULD, an
	// event not as its specification defines it). They do not fail the
	// demo; they show what a strict receiver (--strict) would refuse.
	Warnings map[string]int64 `json:"warnings"`
	// Retried counts messages handed back with a delay, by reason in
	// RetriedBy (setrelay_retries_total).
	Retried   int            `json:"retried"`
	RetriedBy map[string]int `json:"retried_by"`
	// DeadLetters are the records read back from the dead-letter stream.
	DeadLetters []DeadLetter `json:"dead_letters"`
	// ElapsedSeconds runs from the first publish to the last SET accepted.
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// PerSecond is Verified / ElapsedSeconds.
	PerSecond float64 `json:"sets_per_second"`
	// LatencyP50 and LatencyP99 are publish-to-202 latencies of the
	// verified SETs, retries included, in milliseconds.
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	// SET is the seed page's example as the receiver got it.
	SET *DecodedSET `json:"set,omitempty"`
	// OK is true when every good intent was delivered and verified and
	// every bad one dead-lettered for its expected reason; Problems says
	// what is wrong otherwise.
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
}

// DeadLetter is one dead letter as the demo shows it.
type DeadLetter struct {
	IntentID string `json:"intent_id"`
	// What the bad intent demonstrates, and the reason it was expected
	// to be dead-lettered with.
	Why            string `json:"why"`
	ExpectedReason string `json:"expected_reason"`
	Reason         string `json:"reason"`
	Status         int    `json:"status,omitempty"`
	Err            string `json:"err,omitempty"`
	Description    string `json:"description,omitempty"`
	Attempts       int    `json:"attempts"`
}

// DecodedSET is a SET in compact form with its decoded header and claims.
type DecodedSET struct {
	Compact string          `json:"compact"`
	Header  json.RawMessage `json:"header"`
	Claims  json.RawMessage `json:"claims"`
}

// summarize checks the outcome against what was published.
func (e *env) summarize(ctx context.Context, p *published) (Summary, error) {
	c, err := readCounts(e.reg)
	if err != nil {
		return Summary{}, err
	}
	st := e.rcv.Stats()
	s := Summary{
		Intents:          len(p.good),
		BadIntents:       len(p.bad),
		Delivered:        c.delivered,
		ReceiverAccepted: st.Accepted,
		Duplicates:       st.Duplicates,
		Violations:       st.Violations,
		Warnings:         st.Warnings,
		Retried:          c.retried(),
		RetriedBy:        c.retries,
		DeadLetters:      []DeadLetter{},
	}
	problem := func(format string, args ...any) { s.Problems = append(s.Problems, fmt.Sprintf(format, args...)) }

	var (
		lat     []time.Duration
		last    time.Time
		missing []string
	)
	for _, id := range p.good {
		rec, ok := e.rcv.Lookup(set.JTI(id, ReceiverName, ""))
		if !ok {
			missing = append(missing, id)
			continue
		}
		s.Verified++
		lat = append(lat, rec.ReceivedAt.Sub(p.at[id]))
		if rec.ReceivedAt.After(last) {
			last = rec.ReceivedAt
		}
	}
	if s.Verified > 0 {
		s.ElapsedSeconds = last.Sub(p.start).Seconds()
		if s.ElapsedSeconds > 0 {
			s.PerSecond = float64(s.Verified) / s.ElapsedSeconds
		}
		slices.Sort(lat)
		s.LatencyP50 = ms(percentile(lat, 0.50))
		s.LatencyP99 = ms(percentile(lat, 0.99))
	}
	if s.Delivered != s.Intents {
		problem("delivered %d of %d good intents", s.Delivered, s.Intents)
	}
	if len(missing) > 0 {
		problem("%d good intents not verified by the receiver, first %s", len(missing), missing[0])
	}
	if st.Accepted != int64(s.Intents) {
		problem("receiver accepted %d unique SETs, want %d", st.Accepted, s.Intents)
	}
	if n := sum(st.Violations); n > 0 {
		problem("receiver found %d violations: %v", n, st.Violations)
	}

	dls, err := queue.NewDLQ(e.js).List(ctx, queue.Filter{Receiver: ReceiverName})
	if err != nil {
		return s, fmt.Errorf("demo: read dead letters: %w", err)
	}
	seen := map[uint64]bool{}
	for _, d := range dls {
		b, expected := p.bad[d.StreamSeq]
		dl := DeadLetter{
			IntentID: d.IntentID, Reason: d.Reason, Status: d.Status, Err: d.Err,
			Description: d.Description, Attempts: d.Attempts,
		}
		if expected {
			// A malformed intent has no id the worker could read.
			dl.IntentID, dl.Why, dl.ExpectedReason = b.id, b.why, b.reason
			seen[d.StreamSeq] = true
			if d.Reason != b.reason {
				problem("%s dead-lettered as %s, want %s", b.id, d.Reason, b.reason)
			}
		} else {
			problem("unexpected dead letter for %q: %s %s", d.IntentID, d.Reason, d.Description)
		}
		s.DeadLetters = append(s.DeadLetters, dl)
	}
	for _, seq := range slices.Sorted(maps.Keys(p.bad)) {
		if !seen[seq] {
			problem("%s (%s) was not dead-lettered", p.bad[seq].id, p.bad[seq].why)
		}
	}

	if jws := e.capture.get(); jws != "" {
		h, cl, err := decodeJWS(jws)
		if err == nil {
			s.SET = &DecodedSET{Compact: jws, Header: h, Claims: cl}
		}
	}
	if s.SET == nil && len(missing) == 0 {
		problem("the seed example's SET was not captured")
	}
	s.OK = len(s.Problems) == 0
	return s, nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// decodeJWS returns the header and payload of a compact JWS, without
// verifying it (the receiver did).
func decodeJWS(compact string) (header, claims json.RawMessage, err error) {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return nil, nil, errors.New("not a compact JWS")
	}
	h, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	c, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, nil, fmt.Errorf("payload: %w", err)
	}
	if !json.Valid(h) || !json.Valid(c) {
		return nil, nil, errors.New("header or payload is not JSON")
	}
	return h, c, nil
}

// printSummary writes the summary table, the dead letters and the decoded
// SET for a person to read.
func printSummary(out io.Writer, s Summary) {
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  delivered\t%d / %d\tSETs the receiver answered 202 to\n", s.Delivered, s.Intents)
	fmt.Fprintf(tw, "  verified by the receiver\t%d / %d\tthe SSF 1.0 profile (setrelay receiver --help lists the rules); %d violations, %d warnings%s\n",
		s.Verified, s.Intents, sum(s.Violations), sum(s.Warnings), warningList(s.Warnings))
	fmt.Fprintf(tw, "  retried\t%d\t%s\n", s.Retried, byReason(s.RetriedBy))
	fmt.Fprintf(tw, "  dead-lettered\t%d / %d\texpected: the bad intents\n", len(s.DeadLetters), s.BadIntents)
	fmt.Fprintf(tw, "  duplicates at receiver\t%d\tat-least-once: a re-sent SET keeps its jti and claims\n", s.Duplicates)
	fmt.Fprintf(tw, "  throughput\t%.0f SETs/s\tfirst publish to last 202, %.2fs\n", s.PerSecond, s.ElapsedSeconds)
	fmt.Fprintf(tw, "  latency p50 / p99\t%.1f / %.1f ms\tpublish to 202, retries included\n", s.LatencyP50, s.LatencyP99)
	_ = tw.Flush()
	if s.Warnings["events_multiple"] > 0 {
		// The one warning the demo draws on purpose: say why, so that a
		// newcomer does not take it for a fault in setrelay.
		fmt.Fprintln(out, "  (events_multiple: the GOV.UK One Login intents carry GOV.UK's eventMetadata event beside the main one, as that receiver")
		fmt.Fprintln(out, "   expects; SSF 1.0 §4.2.1 says a SET SHOULD hold one event, so a strict SSF receiver warns about it)")
	}

	if len(s.DeadLetters) > 0 {
		fmt.Fprintln(out, "\nDead letters (setrelay dlq list shows these in a running setrelay):")
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, d := range s.DeadLetters {
			detail := d.Description
			if d.Status != 0 {
				detail = fmt.Sprintf("HTTP %d %s: %s", d.Status, d.Err, d.Description)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", d.Reason, d.Why, firstLine(detail, 110))
		}
		_ = tw.Flush()
	}

	if s.SET != nil {
		fmt.Fprintln(out, "\nThe seed page's account-disabled example, as the receiver got it:")
		fmt.Fprintln(out, "header:")
		fmt.Fprintln(out, indent(s.SET.Header))
		fmt.Fprintln(out, "claims:")
		fmt.Fprintln(out, indent(s.SET.Claims))
		fmt.Fprintln(out, "compact (paste into a JWT debugger):")
		fmt.Fprintln(out, s.SET.Compact)
	}

	fmt.Fprintln(out)
	if s.OK {
		fmt.Fprintf(out, "OK: all %d good intents delivered and verified; all %d bad intents dead-lettered for the expected reason.\n", s.Intents, s.BadIntents)
		return
	}
	fmt.Fprintln(out, "FAILED:")
	for _, p := range s.Problems {
		fmt.Fprintln(out, "  - "+p)
	}
}

func byReason(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return "by reason: " + strings.Join(parts, ", ")
}

func indent(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}

// firstLine shortens a multi-line validation message for the table.
func firstLine(s string, limit int) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > limit {
		return s[:limit-3] + "..."
	}
	return s
}

// warningList is " (kind n, ...)" for a non-empty map of warning counts.
func warningList(w map[string]int64) string {
	if len(w) == 0 {
		return ""
	}
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, w[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
