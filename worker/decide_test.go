package worker

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/push"
)

var testPolicy = RetryPolicy{Initial: time.Second, Max: time.Minute, Multiplier: 2, MaxAttempts: 5, MaxAge: time.Hour}

func TestDecideSchedule(t *testing.T) {
	retry := push.Result{Outcome: push.Retry, Reason: "http_5xx", Status: 503}
	tests := []struct {
		attempt int
		jitter  float64
		want    time.Duration
	}{
		// jitter 0.5 is the midpoint: the bare schedule.
		{1, 0.5, 1 * time.Second},
		{2, 0.5, 2 * time.Second},
		{3, 0.5, 4 * time.Second},
		{4, 0.5, 8 * time.Second},
		// jitter 0 and ~1 are the ends of [d/2, 3d/2].
		{1, 0, 500 * time.Millisecond},
		{3, 0, 2 * time.Second},
		{3, 0.999999, 6 * time.Second},
		// out-of-range jitter is treated as none rather than trusted.
		{2, -1, 2 * time.Second},
		{2, 7, 2 * time.Second},
	}
	for _, tt := range tests {
		got := Decide(retry, tt.attempt, 0, testPolicy, tt.jitter)
		if got.Kind != NakDelay {
			t.Fatalf("attempt %d: kind %v, want nak_delay", tt.attempt, got.Kind)
		}
		if diff := got.Delay - tt.want; diff < -time.Millisecond || diff > time.Millisecond {
			t.Errorf("attempt %d jitter %v: delay %v, want %v", tt.attempt, tt.jitter, got.Delay, tt.want)
		}
		if got.Reason != "http_5xx" {
			t.Errorf("reason %q, want the push result's", got.Reason)
		}
	}
}

func TestDecideCapsAtMax(t *testing.T) {
	p := RetryPolicy{Initial: time.Second, Max: 10 * time.Second, MaxAttempts: 1000}
	for attempt := 1; attempt < 1000; attempt++ {
		for _, j := range []float64{0, 0.5, 0.99} {
			a := Decide(push.Result{Outcome: push.Retry}, attempt, 0, p, j)
			if a.Kind != NakDelay || a.Delay > p.Max || a.Delay <= 0 {
				t.Fatalf("attempt %d jitter %v: %+v, want 0 < delay <= %v", attempt, j, a, p.Max)
			}
		}
	}
	// Late attempts sit at Max (jitter only lowers them).
	if a := Decide(push.Result{Outcome: push.Retry}, 50, 0, p, 0.99); a.Delay != p.Max {
		t.Errorf("late attempt delay %v, want %v", a.Delay, p.Max)
	}
}

func TestDecideBoundaries(t *testing.T) {
	retry := push.Result{Outcome: push.Retry, Reason: "timeout"}
	refresh := push.Result{Outcome: push.Refresh, Reason: "access_denied", Status: 400, Err: "access_denied"}
	perm := push.Result{Outcome: push.Permanent, Reason: "invalid_audience", Status: 400, Err: "invalid_audience"}
	ok := push.Result{Outcome: push.Delivered, Reason: "delivered", Status: 202}
	p := testPolicy
	tests := []struct {
		name    string
		r       push.Result
		attempt int
		age     time.Duration
		want    ActionKind
		wantWhy string
	}{
		{"delivered first time", ok, 1, 0, Ack, ""},
		{"delivered on the last attempt", ok, p.MaxAttempts, 0, Ack, ""},
		{"delivered after max age", ok, 3, 100 * time.Hour, Ack, ""},
		{"delivered beyond max attempts", ok, p.MaxAttempts + 5, 0, Ack, ""},
		{"permanent on first attempt", perm, 1, 0, DeadLetter, "invalid_audience"},
		{"permanent keeps its reason when exhausted", perm, p.MaxAttempts, 0, DeadLetter, "invalid_audience"},
		{"permanent without a reason", push.Result{Outcome: push.Permanent}, 1, 0, DeadLetter, "permanent"},
		{"unknown outcome is not retried blindly", push.Result{Outcome: push.Outcome(99), Reason: "x"}, 1, 0, DeadLetter, "x"},
		{"retry before last attempt", retry, p.MaxAttempts - 1, 0, NakDelay, "timeout"},
		{"retry on last attempt", retry, p.MaxAttempts, 0, DeadLetter, ReasonAttemptsExhausted},
		{"retry past last attempt", retry, p.MaxAttempts + 1, 0, DeadLetter, ReasonAttemptsExhausted},
		{"refresh before last attempt", refresh, 1, 0, NakDelay, "access_denied"},
		{"refresh on last attempt", refresh, p.MaxAttempts, 0, DeadLetter, ReasonAttemptsExhausted},
		{"retry at exactly max age", retry, 1, p.MaxAge, NakDelay, "timeout"},
		{"retry just past max age", retry, 1, p.MaxAge + time.Nanosecond, DeadLetter, ReasonMaxAge},
		{"attempts checked before age", retry, p.MaxAttempts, p.MaxAge + time.Hour, DeadLetter, ReasonAttemptsExhausted},
		{"attempt 0 is treated as the first", retry, 0, 0, NakDelay, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.r, tt.attempt, tt.age, p, 0.5)
			if got.Kind != tt.want {
				t.Fatalf("kind %v, want %v (%+v)", got.Kind, tt.want, got)
			}
			if tt.wantWhy != "" && got.Reason != tt.wantWhy {
				t.Errorf("reason %q, want %q", got.Reason, tt.wantWhy)
			}
			if got.Kind != NakDelay && got.Delay != 0 {
				t.Errorf("delay %v on a %v", got.Delay, got.Kind)
			}
		})
	}
}

func TestDecideDefaults(t *testing.T) {
	retry := push.Result{Outcome: push.Retry}
	if a := Decide(retry, DefaultRetryMaxAttempts-1, 0, RetryPolicy{}, 0.5); a.Kind != NakDelay {
		t.Errorf("attempt %d with defaults: %v, want nak_delay", DefaultRetryMaxAttempts-1, a.Kind)
	}
	if a := Decide(retry, DefaultRetryMaxAttempts, 0, RetryPolicy{}, 0.5); a.Reason != ReasonAttemptsExhausted {
		t.Errorf("attempt %d with defaults: %+v, want attempts_exhausted", DefaultRetryMaxAttempts, a)
	}
	if a := Decide(retry, 1, DefaultRetryMaxAge+time.Second, RetryPolicy{}, 0.5); a.Reason != ReasonMaxAge {
		t.Errorf("age past default max: %+v", a)
	}
	if a := Decide(retry, 1, 0, RetryPolicy{}, 0.5); a.Delay != DefaultRetryInitial {
		t.Errorf("first delay with defaults %v, want %v", a.Delay, DefaultRetryInitial)
	}
}

func TestDecideRetryAfterDominates(t *testing.T) {
	tests := []struct {
		retryAfter time.Duration
		attempt    int
		jitter     float64
		want       time.Duration
	}{
		{2 * time.Second, 1, 0.5, 2 * time.Second},   // longer than the 1s schedule
		{2 * time.Second, 1, 0.999, 2 * time.Second}, // longer than the jittered 1.5s too
		{2 * time.Second, 4, 0.5, 8 * time.Second},   // the schedule is longer: keep it
		{5 * time.Minute, 1, 0.5, 5 * time.Minute},   // beyond Max: the receiver asked
		{0, 2, 0.5, 2 * time.Second},                 // none given
	}
	for _, tt := range tests {
		r := push.Result{Outcome: push.Retry, Reason: "http_429", Status: 429, RetryAfter: tt.retryAfter}
		a := Decide(r, tt.attempt, 0, testPolicy, tt.jitter)
		if a.Kind != NakDelay || a.Delay != tt.want {
			t.Errorf("Retry-After %v attempt %d: %+v, want nak %v", tt.retryAfter, tt.attempt, a, tt.want)
		}
	}
}

// TestDecideEveryStatus runs every HTTP status through the real
// push.Classify and checks the action the worker takes, so a change in
// either package that would retry a rejected SET, or drop a retryable one,
// fails here.
func TestDecideEveryStatus(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	p := testPolicy
	for status := 100; status <= 599; status++ {
		r := push.Classify(status, http.Header{}, nil, nil, now, time.Minute)
		first := Decide(r, 1, 0, p, 0.5)
		last := Decide(r, p.MaxAttempts, 0, p, 0.5)
		name := strconv.Itoa(status)

		// The outcome alone determines the action kind.
		switch r.Outcome {
		case push.Delivered:
			if first.Kind != Ack || last.Kind != Ack {
				t.Errorf("%s delivered: %v / %v, want ack", name, first.Kind, last.Kind)
			}
		case push.Permanent:
			if first.Kind != DeadLetter || first.Reason != r.Reason || r.Reason == "" {
				t.Errorf("%s permanent: %+v, want dead letter with reason %q", name, first, r.Reason)
			}
		case push.Blocked:
			if first.Kind != Block || last.Kind != Block || first.Reason != r.Reason {
				t.Errorf("%s blocked: %+v / %+v, want block with reason %q", name, first, last, r.Reason)
			}
		case push.Retry, push.Refresh:
			if first.Kind != NakDelay || first.Delay < p.Initial/2 {
				t.Errorf("%s retryable: %+v, want nak >= %v", name, first, p.Initial/2)
			}
			if last.Kind != DeadLetter || last.Reason != ReasonAttemptsExhausted {
				t.Errorf("%s on last attempt: %+v, want attempts_exhausted", name, last)
			}
		default:
			t.Errorf("%s: unknown outcome %v", name, r.Outcome)
		}

		// And the classes land where RFC 8935 and the project's rules put them.
		switch {
		case status == 200 || status == 201 || status == 202 || status == 204:
			if first.Kind != Ack {
				t.Errorf("%s: %v, want ack", name, first.Kind)
			}
		case status == 429 || status == 408 || status >= 500 && status != 501 && status != 505:
			if first.Kind != NakDelay {
				t.Errorf("%s: %v, want nak_delay (transient)", name, first.Kind)
			}
		case status == 404 || status == 405 || status == 410 || status == 406 || status == 415:
			// 406 and 415 refuse RFC 8935's fixed Accept and
			// Content-Type: the URL is not a push endpoint.
			if first.Kind != Block {
				t.Errorf("%s: %v, want block (endpoint not found)", name, first.Kind)
			}
		case status >= 400 && status < 500 && status != 401 && status != 408 && status != 425 && status != 429:
			if first.Kind != DeadLetter {
				t.Errorf("%s: %v, want dead_letter (rejected)", name, first.Kind)
			}
		}
	}
}

// TestDecideRFC8935Errors runs each RFC 8935 error code, as a receiver
// would send it in a 400, through push.Classify and Decide.
func TestDecideRFC8935Errors(t *testing.T) {
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	h := http.Header{"Content-Type": []string{"application/json"}}
	tests := []struct {
		err      string
		status   int
		wantKind ActionKind
		wantWhy  string
	}{
		{"invalid_request", 400, DeadLetter, "invalid_request"},
		{"invalid_key", 400, DeadLetter, "invalid_key"},
		{"invalid_issuer", 400, DeadLetter, "invalid_issuer"},
		{"invalid_audience", 400, DeadLetter, "invalid_audience"},
		{"authentication_failed", 400, NakDelay, ""},
		{"authentication_failed", 401, NakDelay, ""},
		{"access_denied", 400, NakDelay, ""},
		{"access_denied", 403, NakDelay, ""},
		// Decide alone dead-letters a 403 with another code; Settle holds
		// it for the receiver-wide streak first (TestSettleTable).
		{"invalid_key", 403, DeadLetter, "forbidden"},
		{"something_new", 400, DeadLetter, ""},
	}
	for _, tt := range tests {
		body := []byte(`{"err":"` + tt.err + `","description":"because ` + tt.err + `"}`)
		r := push.Classify(tt.status, h, body, nil, now, time.Minute)
		a := Decide(r, 1, 0, testPolicy, 0.5)
		if a.Kind != tt.wantKind {
			t.Errorf("%d %s: %+v (result %+v), want %v", tt.status, tt.err, a, r, tt.wantKind)
			continue
		}
		if tt.wantWhy != "" && a.Reason != tt.wantWhy {
			t.Errorf("%d %s: reason %q, want %q", tt.status, tt.err, a.Reason, tt.wantWhy)
		}
		if r.Err != tt.err || !strings.Contains(r.Description, tt.err) {
			t.Errorf("%d %s: result lost err/description: %+v", tt.status, tt.err, r)
		}
		// Retryable codes are dead-lettered as exhausted on the last attempt,
		// carrying on through Decide rather than looping for ever.
		if tt.wantKind == NakDelay {
			if a := Decide(r, testPolicy.MaxAttempts, 0, testPolicy, 0.5); a.Reason != ReasonAttemptsExhausted {
				t.Errorf("%d %s last attempt: %+v", tt.status, tt.err, a)
			}
		}
	}
}

func TestDecideTransportErrors(t *testing.T) {
	now := time.Now()
	r := push.Classify(0, nil, nil, errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), now, time.Minute)
	if a := Decide(r, 1, 0, testPolicy, 0.5); a.Kind != NakDelay {
		t.Errorf("connection error: %+v (result %+v), want nak_delay", a, r)
	}
	h := http.Header{"Retry-After": []string{"2"}}
	r = push.Classify(429, h, nil, nil, now, time.Minute)
	if a := Decide(r, 1, 0, testPolicy, 0.999); a.Kind != NakDelay || a.Delay < 2*time.Second {
		t.Errorf("429 Retry-After 2: %+v (result %+v), want nak >= 2s", a, r)
	}
}
