package worker

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	fleetlimits "github.com/setrelay/setrelay/fleet"
)

// TestGateBoundsConcurrentPushes: with a Gate of 3 (a process's share of
// max_in_flight), a receiver never sees more than 3 pushes at once however
// many of the pool's 16 slots hold its messages, and every intent is still
// delivered.
func TestGateBoundsConcurrentPushes(t *testing.T) {
	e := newEnv(t, 30*time.Second, "gated")
	var mu sync.Mutex
	inFlight, most, delivered := 0, 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		time.Sleep(30 * time.Millisecond)
		mu.Lock()
		inFlight--
		delivered++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)

	spec := e.spec(e.js, "gated", srv.URL+"/events")
	spec.Gate = fleetlimits.NewGate(3)
	e.run(Config{Concurrency: 16, Receivers: []Receiver{spec}}, e.js, nil)
	const n = 60
	for i := range n {
		e.publish(sessionRevoked(idN("gate", i)))
	}
	eventually(t, 30*time.Second, "every intent delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return delivered >= n
	})
	mu.Lock()
	defer mu.Unlock()
	if most > 3 {
		t.Fatalf("the receiver saw %d pushes at once; the gate allows 3", most)
	}
	if most < 2 {
		t.Fatalf("the receiver saw at most %d push at once; with 16 slots the gate's 3 should be used", most)
	}
}
