package receiver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// statuses pushes n distinct valid SETs in sequence and returns the status
// of each.
func statuses(t *testing.T, h *harness, n int) []int {
	t.Helper()
	tok := h.token()
	out := make([]int, n)
	for i := range out {
		resp, _ := h.push(tok, h.set(claims(h.clock.Now(), fmt.Sprint("jti-", i))), nil)
		out[i] = resp.StatusCode
	}
	return out
}

func count(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

func TestFailRateIsDeterministic(t *testing.T) {
	run := func(seed uint64) []int {
		h := newHarness(t, func(c *Config) { c.FailRate = 0.5; c.Seed = seed })
		st := statuses(t, h, 200)
		if got := h.r.Stats(); got.Faults[Fault500] != int64(count(st, 500)) || got.Accepted != int64(count(st, 202)) {
			t.Fatalf("stats %+v disagree with answers", got)
		}
		return st
	}
	a, b, other := run(7), run(7), run(8)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("the same seed gave different fault sequences")
	}
	if fmt.Sprint(a) == fmt.Sprint(other) {
		t.Fatal("different seeds gave the same fault sequence")
	}
	if n := count(a, 500); n < 70 || n > 130 {
		t.Fatalf("%d of 200 failed at rate 0.5", n)
	}
	if count(a, 500)+count(a, 202) != 200 {
		t.Fatalf("unexpected statuses %v", a)
	}
}

func TestRate429SendsRetryAfter(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Rate429 = 1; c.RetryAfter = 1500 * time.Millisecond })
	resp, _ := h.push(h.token(), h.set(claims(h.clock.Now(), "x")), nil)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("got %d Retry-After %q, want 429 and 2 (rounded up)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Faults come before authentication, as at a real rate-limiting gateway.
	resp, _ = h.push("", "junk", nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("unauthenticated request got %d, want 429", resp.StatusCode)
	}
	if st := h.r.Stats(); st.Faults[Fault429] != 2 || st.Accepted != 0 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}

	// At a partial rate, over a run, both answers appear.
	h = newHarness(t, func(c *Config) { c.Rate429 = 0.3; c.Seed = 1 })
	st := statuses(t, h, 100)
	if n := count(st, 429); n < 15 || n > 45 || n+count(st, 202) != 100 {
		t.Fatalf("%d of 100 answered 429 at rate 0.3", n)
	}
}

func TestLatency(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Latency = 80 * time.Millisecond })
	tok := h.token()
	start := time.Now()
	resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "x")), nil)
	if resp.StatusCode != 202 || time.Since(start) < 80*time.Millisecond {
		t.Fatalf("status %d after %s, want 202 after at least 80ms", resp.StatusCode, time.Since(start))
	}
	if st := h.r.Stats(); st.Faults[FaultLatency] != 1 {
		t.Fatalf("faults %v", st.Faults)
	}
}

func TestHang(t *testing.T) {
	t.Run("until the client gives up", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.HangRate = 1; c.MaxHang = time.Minute })
		tok := h.token()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/events", strings.NewReader(h.set(claims(h.clock.Now(), "x"))))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		_, err = http.DefaultClient.Do(req)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want the client's deadline", err)
		}
		// The handler notices the client left and records the hang.
		deadline := time.Now().Add(5 * time.Second)
		for h.r.Stats().Responses["499"] != 1 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if st := h.r.Stats(); st.Faults[FaultHang] != 1 || st.Responses["499"] != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("bounded by MaxHang", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.HangRate = 1; c.MaxHang = 50 * time.Millisecond })
		resp, _ := h.push(h.token(), h.set(claims(h.clock.Now(), "x")), nil)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503 after MaxHang", resp.StatusCode)
		}
	})
}

func TestRevokeTokenEvery(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RevokeTokenEvery = 2 })
	tok := h.token()
	for i := range 2 {
		if resp, body := h.push(tok, h.set(claims(h.clock.Now(), fmt.Sprint(i))), nil); resp.StatusCode != 202 {
			t.Fatalf("push %d: %d %s", i, resp.StatusCode, body)
		}
	}
	resp, body := h.push(tok, h.set(claims(h.clock.Now(), "2")), nil)
	if e := rfc8935Error(t, resp, body); resp.StatusCode != 401 || e.Err != ErrAuthenticationFailed || !strings.Contains(e.Description, "revoked") {
		t.Fatalf("after 2 accepted: %d %+v", resp.StatusCode, e)
	}
	fresh := h.token()
	if fresh == tok {
		t.Fatal("token endpoint handed out the revoked token")
	}
	if resp, body := h.push(fresh, h.set(claims(h.clock.Now(), "2")), nil); resp.StatusCode != 202 {
		t.Fatalf("with a fresh token: %d %s", resp.StatusCode, body)
	}
	if st := h.r.Stats(); st.Faults[FaultRevokeToken] != 1 || st.Violations[VTokenRevoked] != 1 || st.TokensIssued != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRejectTxnPrefix(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RejectTxnPrefix = "bad-" })
	tok := h.token()
	c := claims(h.clock.Now(), "r1")
	c["txn"] = "bad-123"
	resp, body := h.push(tok, h.set(c), nil)
	if e := rfc8935Error(t, resp, body); resp.StatusCode != 400 || e.Err != ErrInvalidRequest || !strings.Contains(e.Description, "bad-123") {
		t.Fatalf("got %d %+v", resp.StatusCode, e)
	}
	if resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "r2")), nil); resp.StatusCode != 202 {
		t.Fatalf("other txn: %d", resp.StatusCode)
	}
	st := h.r.Stats()
	if st.Faults[FaultRejectTxn] != 1 || st.Rejections[ErrInvalidRequest] != 1 || st.Accepted != 1 || len(st.Violations) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, ok := h.r.Lookup("r1"); ok {
		t.Fatal("a rejected SET was recorded as accepted")
	}
}

func TestScheduledOutage(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.DownAfter = time.Minute; c.DownFor = 30 * time.Second })
	tok := h.token()
	if resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "before")), nil); resp.StatusCode != 202 {
		t.Fatalf("before the outage: %d", resp.StatusCode)
	}
	h.clock.Add(time.Minute + 10*time.Second)
	resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "during")), nil)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "20" {
		t.Fatalf("during: %d Retry-After %q, want 503 and 20", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The whole host is down, the token endpoint too.
	if resp, _ := h.tokenRequest(map[string][]string{"grant_type": {"client_credentials"}}, true, testClient, testSecret); resp.StatusCode != 503 {
		t.Fatalf("token endpoint during the outage: %d", resp.StatusCode)
	}
	h.clock.Add(20 * time.Second)
	if resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "after")), nil); resp.StatusCode != 202 {
		t.Fatalf("after: %d", resp.StatusCode)
	}
	if st := h.r.Stats(); st.Faults[FaultDown] != 2 || st.Accepted != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSetDown(t *testing.T) {
	h := newHarness(t, nil)
	tok := h.token()
	h.r.SetDown(true)
	if resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "x")), nil); resp.StatusCode != 503 {
		t.Fatalf("down: %d", resp.StatusCode)
	}
	h.r.SetDown(false)
	if resp, _ := h.push(tok, h.set(claims(h.clock.Now(), "x")), nil); resp.StatusCode != 202 {
		t.Fatalf("up again: %d", resp.StatusCode)
	}
}

// TestFaultCountsUnderConcurrency: concurrent clients get the same number
// of each fault over the same number of requests, whatever the interleaving.
func TestFaultCountsUnderConcurrency(t *testing.T) {
	run := func() int64 {
		h := newHarness(t, func(c *Config) { c.FailRate = 0.3; c.Seed = 42 })
		tok := h.token()
		sets := make([]string, 100)
		for i := range sets {
			sets[i] = h.set(claims(h.clock.Now(), fmt.Sprint(i)))
		}
		done := make(chan struct{})
		for w := range 4 {
			go func() {
				defer func() { done <- struct{}{} }()
				for i := w; i < len(sets); i += 4 {
					h.push(tok, sets[i], nil)
				}
			}()
		}
		for range 4 {
			<-done
		}
		return h.r.Stats().Faults[Fault500]
	}
	if a, b := run(), run(); a != b || a == 0 {
		t.Fatalf("fault counts %d and %d", a, b)
	}
}

func TestCloseEndsHangs(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HangRate = 1; c.MaxHang = time.Minute })
	tok := h.token()
	done := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/events", strings.NewReader("x"))
		if err != nil {
			done <- 0
			return
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	for h.r.Stats().Faults[FaultHang] == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	h.r.Close()
	h.r.Close() // idempotent
	select {
	case s := <-done:
		if s != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the hang")
	}
}
