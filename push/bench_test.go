package push

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setrelay/setrelay/secret"
)

// benchConcurrency are the worker counts compared. Run all three benchmarks
// in one invocation so the figures share the machine's conditions:
//
//	go test -run '^$' -bench 'Push|BareHTTP' -benchmem ./push/
//
// BenchmarkPushVsBare alternates the two clients in rounds inside one
// benchmark and reports the ratio, which stays meaningful on a loaded,
// shared machine where back-to-back benchmarks drift apart.
var benchConcurrency = []int{1, 8, 64}

// benchReceiver answers 202 to everything, like a healthy RFC 8935 receiver.
func benchReceiver(b *testing.B) *httptest.Server {
	b.Helper()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	s.Config.ErrorLog = discardLog
	s.Start()
	b.Cleanup(s.Close)
	return s
}

// runN runs count calls of op over n goroutines and returns the failures.
func runN(n, count int, op func() bool) int64 {
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(count) {
				if !op() {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

// runConcurrent is one benchmark of op at concurrency n.
func runConcurrent(b *testing.B, n int, op func() bool) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	failed := runN(n, b.N, op)
	b.StopTimer()
	if failed > 0 {
		b.Fatalf("%d of %d pushes failed", failed, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}

// pushOp is Client.Push with a cached OAuth token, the production setup.
func pushOp(b *testing.B, url string, n int) func() bool {
	b.Helper()
	ts := newTokenServer(b, false)
	c, err := New(Config{
		Name: "bench", Endpoint: url, InsecureHTTP: true, MaxConns: n,
		Auth: AuthConfig{TokenURL: ts.URL, ClientID: testClientID, ClientSecret: secret.Value(testSecret)},
	}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.CloseIdleConnections)
	body := []byte(testJWS)
	ctx := context.Background()
	if r := c.Push(ctx, body); r.Outcome != Delivered { // fetch the token
		b.Fatal(r.Error())
	}
	return func() bool { return c.Push(ctx, body).Outcome == Delivered }
}

// bareOp is the same POST, same headers, through a plain net/http client
// with the same idle-connection limit.
func bareOp(b *testing.B, url string, n int) func() bool {
	b.Helper()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	b.Cleanup(hc.CloseIdleConnections)
	body := []byte(testJWS)
	authz := "Bearer " + tokenValue(1)
	return func() bool {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return false
		}
		req.Header.Set("Content-Type", "application/secevent+jwt")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "setrelay/bench")
		req.Header.Set("Authorization", authz)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	}
}

// BenchmarkPush measures pushes/s and allocations per push of Client.Push
// against a loopback receiver.
func BenchmarkPush(b *testing.B) {
	for _, n := range benchConcurrency {
		b.Run("c="+strconv.Itoa(n), func(b *testing.B) {
			rs := benchReceiver(b)
			runConcurrent(b, n, pushOp(b, rs.URL+"/events", n))
		})
	}
}

// BenchmarkBareHTTP is the baseline for BenchmarkPush.
func BenchmarkBareHTTP(b *testing.B) {
	for _, n := range benchConcurrency {
		b.Run("c="+strconv.Itoa(n), func(b *testing.B) {
			rs := benchReceiver(b)
			runConcurrent(b, n, bareOp(b, rs.URL+"/events", n))
		})
	}
}

// BenchmarkPushVsBare runs b.N pushes with each client, alternating them in
// ten rounds against one receiver, and reports both rates and
// push_pct_of_bare (the goal is >= 90).
func BenchmarkPushVsBare(b *testing.B) {
	for _, n := range benchConcurrency {
		b.Run("c="+strconv.Itoa(n), func(b *testing.B) {
			rs := benchReceiver(b)
			url := rs.URL + "/events"
			ops := [2]func() bool{pushOp(b, url, n), bareOp(b, url, n)}
			const rounds = 10
			per := max(b.N/rounds, 1)
			var spent [2]time.Duration
			b.ResetTimer()
			for i := range rounds {
				for k := range 2 {
					which := (i + k) % 2 // alternate which client goes first
					start := time.Now()
					if f := runN(n, per, ops[which]); f > 0 {
						b.Fatalf("%d failures", f)
					}
					spent[which] += time.Since(start)
				}
			}
			b.StopTimer()
			total := float64(per * rounds)
			pushRate, bareRate := total/spent[0].Seconds(), total/spent[1].Seconds()
			b.ReportMetric(pushRate, "push/s")
			b.ReportMetric(bareRate, "bare/s")
			b.ReportMetric(100*pushRate/bareRate, "push_pct_of_bare")
		})
	}
}
