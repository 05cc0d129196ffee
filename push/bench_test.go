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
)

// benchConcurrency are the worker counts compared in BenchmarkPush and
// BenchmarkBareHTTP; run both in one invocation so the ratio is meaningful:
//
//	go test -run '^$' -bench 'Push|BareHTTP' -benchmem ./push/
var benchConcurrency = []int{1, 8, 64}

// benchReceiver answers 202 to everything, like a healthy RFC 8935 receiver.
func benchReceiver(b *testing.B) *httptest.Server {
	b.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	b.Cleanup(s.Close)
	return s
}

// runConcurrent runs b.N calls of op spread over n goroutines.
func runConcurrent(b *testing.B, n int, op func() bool) {
	b.Helper()
	var next atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if !op() {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d of %d pushes failed", f, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pushes/s")
}

// BenchmarkPush measures Client.Push with a cached OAuth token (the
// production configuration) against a loopback receiver.
func BenchmarkPush(b *testing.B) {
	for _, n := range benchConcurrency {
		b.Run("c="+strconv.Itoa(n), func(b *testing.B) {
			rs := benchReceiver(b)
			ts := newTokenServer(b, false)
			c, err := New(Config{
				Name: "bench", Endpoint: rs.URL + "/events", InsecureHTTP: true, MaxConns: n,
				Auth: AuthConfig{TokenURL: ts.URL, ClientID: testClientID, ClientSecret: Secret(testSecret)},
			}, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(c.CloseIdleConnections)
			body := []byte(testJWS)
			ctx := context.Background()
			if r := c.Push(ctx, body); r.Outcome != Delivered { // warm the token
				b.Fatal(r.Error())
			}
			runConcurrent(b, n, func() bool { return c.Push(ctx, body).Outcome == Delivered })
		})
	}
}

// BenchmarkBareHTTP is the baseline: the same POST with the same headers
// through a plain net/http client with the same idle-connection limit.
func BenchmarkBareHTTP(b *testing.B) {
	for _, n := range benchConcurrency {
		b.Run("c="+strconv.Itoa(n), func(b *testing.B) {
			rs := benchReceiver(b)
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
			b.Cleanup(hc.CloseIdleConnections)
			body := []byte(testJWS)
			url := rs.URL + "/events"
			authz := "Bearer " + tokenValue(1)
			runConcurrent(b, n, func() bool {
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
			})
		})
	}
}
