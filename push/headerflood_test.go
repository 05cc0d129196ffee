package push

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// A receiver answering with megabytes of headers made every attempt hold
// them in memory (the transport's default allows 10 MiB, per concurrent
// push). Headers beyond MaxResponseHeaderBytes end the attempt as a
// retryable failure instead, with no status taken from the flood.
func TestHeaderFloodIsRefused(t *testing.T) {
	value := strings.Repeat("x", 8<<10)
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) {
		for i := range 512 { // 4 MiB
			w.Header().Set("X-Flood-"+strconv.Itoa(i), value)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Status != 0 || r.Outcome != Retry || r.Cause == nil || !strings.Contains(r.Cause.Error(), "headers exceeded") {
		t.Fatalf("a 4 MiB header answer was taken: status %d outcome %v reason %s cause %v", r.Status, r.Outcome, r.Reason, r.Cause)
	}
}
