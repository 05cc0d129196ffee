package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/setrelay/setrelay/worker"
)

// TestRunSummary runs the demo's whole code path with a small count and
// checks its summary against what was published: every good intent
// delivered and verified, the bad ones dead-lettered with their reasons,
// retries from the injected faults, and the printed SET.
func TestRunSummary(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay end to end")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	const count = 40
	// A fault rate high enough that retries are all but certain with 40
	// intents; the seed makes the draw reproducible.
	sum, err := Run(ctx, Options{Count: count, FaultRate: 0.3, Seed: 7, Timeout: 40 * time.Second}, &out)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if !sum.OK || len(sum.Problems) != 0 {
		t.Fatalf("summary not OK: %v\n%s", sum.Problems, out.String())
	}
	if sum.Intents != count || sum.Delivered != count || sum.Verified != count || sum.ReceiverAccepted != count {
		t.Errorf("intents %d delivered %d verified %d receiver accepted %d, want %d each",
			sum.Intents, sum.Delivered, sum.Verified, sum.ReceiverAccepted, count)
	}
	if len(sum.Violations) != 0 {
		t.Errorf("violations: %v", sum.Violations)
	}
	if sum.Retried == 0 {
		t.Errorf("retried 0 with a 30%% fault rate")
	}
	wantReasons := map[string]string{}
	for _, b := range badIntents() {
		wantReasons[b.id] = b.reason
	}
	if sum.BadIntents != len(wantReasons) || len(sum.DeadLetters) != len(wantReasons) {
		t.Fatalf("bad intents %d, dead letters %+v; want %d", sum.BadIntents, sum.DeadLetters, len(wantReasons))
	}
	for _, d := range sum.DeadLetters {
		if want, ok := wantReasons[d.IntentID]; !ok || d.Reason != want {
			t.Errorf("dead letter %s: reason %q, want %q", d.IntentID, d.Reason, want)
		}
		delete(wantReasons, d.IntentID)
		if d.Reason == "invalid_request" && (d.Status != 400 || d.Err != "invalid_request") {
			t.Errorf("receiver refusal recorded as status %d err %q", d.Status, d.Err)
		}
	}
	if sum.LatencyP50 <= 0 || sum.LatencyP99 < sum.LatencyP50 || sum.PerSecond <= 0 {
		t.Errorf("latency p50 %v p99 %v, rate %v", sum.LatencyP50, sum.LatencyP99, sum.PerSecond)
	}

	// The printed SET is the seed page's example, and it verifies with an
	// independent JWT library against nothing but its own claims' shape
	// (the receiver already checked the signature with go-jose).
	if sum.SET == nil {
		t.Fatal("no decoded SET in the summary")
	}
	var claims map[string]any
	if err := json.Unmarshal(sum.SET.Claims, &claims); err != nil {
		t.Fatal(err)
	}
	ev, _ := claims["events"].(map[string]any)
	disabled, _ := ev["https://schemas.openid.net/secevent/risc/event-type/account-disabled"].(map[string]any)
	if disabled["reason"] != "hijacking" || claims["iss"] != Issuer || claims["aud"] != Audience {
		t.Errorf("decoded SET claims: %s", sum.SET.Claims)
	}
	if _, has := claims["sub"]; has {
		t.Errorf("SET carries sub")
	}
	tok, _, err := jwt.NewParser().ParseUnverified(sum.SET.Compact, jwt.MapClaims{})
	if err != nil {
		t.Fatalf("compact SET does not parse: %v", err)
	}
	if tok.Header["typ"] != "secevent+jwt" || tok.Header["alg"] != "ES256" || tok.Header["kid"] != KeyID {
		t.Errorf("header %v", tok.Header)
	}

	text := out.String()
	for _, want := range []string{"delivered", "verified by the receiver", "retried", "dead-lettered", "SETs/s", "p50 / p99",
		worker.ReasonInvalidIntent, "invalid_request", `"reason": "hijacking"`, "OK: all 40 good intents"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// TestRunFailsWhenReceiverCannotVerify: the exit-status logic must be able
// to fail. With a timeout too short for anything to settle, the summary
// lists what is missing and Run returns ErrCheckFailed.
func TestRunFailsWhenNothingSettles(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay end to end")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	sum, err := Run(ctx, Options{Count: 20, FaultRate: 1, Timeout: 300 * time.Millisecond}, &out)
	if !errors.Is(err, ErrCheckFailed) {
		t.Fatalf("err = %v, want ErrCheckFailed\n%s", err, out.String())
	}
	if sum.OK || len(sum.Problems) == 0 || sum.Verified == sum.Intents {
		t.Errorf("summary OK=%v problems=%v verified=%d", sum.OK, sum.Problems, sum.Verified)
	}
	if !strings.Contains(out.String(), "FAILED:") {
		t.Errorf("output does not say FAILED:\n%s", out.String())
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, ms(i))
	}
	tests := []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.5, 0},
		{[]time.Duration{ms(7)}, 0.99, ms(7)},
		{d, 0.50, ms(50)},
		{d, 0.99, ms(99)},
		{d, 1, ms(100)},
		{d[:10], 0.99, ms(10)},
	}
	for _, tt := range tests {
		if got := percentile(tt.in, tt.q); got != tt.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tt.in), tt.q, got, tt.want)
		}
	}
}

func TestDecodeJWS(t *testing.T) {
	h, c, err := decodeJWS("eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiJ4In0.c2ln")
	if err != nil || string(h) != `{"alg":"ES256"}` || string(c) != `{"jti":"x"}` {
		t.Errorf("decodeJWS = %s, %s, %v", h, c, err)
	}
	for _, bad := range []string{"", "a.b", "!!.e30.x", "e30.!!.x", "bm90IGpzb24.e30.x"} {
		if _, _, err := decodeJWS(bad); err == nil {
			t.Errorf("decodeJWS(%q) succeeded", bad)
		}
	}
}
