package backfill

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/signer"
)

// deliveryN is the size of the end-to-end backfill test. The default keeps
// the package's test run short; the figure is
// go test ./backfill/ -run TestBackfillDeliversEveryValidIntentOnce -v -backfill.n=200000
var deliveryN = flag.Int("backfill.n", 20000, "intents in TestBackfillDeliversEveryValidIntentOnce (1% invalid)")

// jtiSink is a receiver accepting every SET and counting each jti, after
// verifying the signature with the relay's public key.
type jtiSink struct {
	key  *signer.Key
	mu   sync.Mutex
	jtis map[string]int
	bad  int
}

func (s *jtiSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, `{"err":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	claims := jwt.MapClaims{}
	pub := s.key.PublicJWK().Key
	_, err = jwt.ParseWithClaims(string(b), claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuedAt())
	jti, _ := claims["jti"].(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || jti == "" {
		s.bad++
		http.Error(w, `{"err":"invalid_request","description":"bad SET"}`, http.StatusBadRequest)
		return
	}
	s.jtis[jti]++
	w.WriteHeader(http.StatusAccepted)
}

func (s *jtiSink) counts() (unique, total, bad int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.jtis {
		total += n
	}
	return len(s.jtis), total, s.bad
}

// TestBackfillDeliversEveryValidIntentOnce backfills a file with 1 % invalid
// lines into a running relay (embedded JetStream, worker pool, real ES256
// signing, HTTP push) and checks that exactly the invalid lines are rejected
// and every valid intent reaches the receiver once.
func TestBackfillDeliversEveryValidIntentOnce(t *testing.T) {
	n := *deliveryN
	// The receiver needs the relay's key and the relay needs the receiver's
	// address: bind first, serve once the key is set.
	sink := &jtiSink{jtis: map[string]int{}}
	rcv := httptest.NewUnstartedServer(sink)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://" + rcv.Listener.Addr().String() + "/events", Concurrency: 32})
	sink.key = rc.Key
	rcv.Start()
	defer rcv.Close()
	cfg := rc.Config
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := relay.Start(ctx, cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	nc, err := nats.Connect(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	path, invalid, valid := genFile(t, n)
	opts := Options{Checkpoint: path + ".checkpoint", Rejects: path + ".rejects.ndjson"}
	start := time.Now()
	sum, err := Run(ctx, nc, fileSource(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("backfill of %d lines: %s", n, sum)
	if sum.Published != uint64(valid) || sum.Invalid != uint64(len(invalid)) {
		t.Fatalf("published %d, invalid %d; want %d, %d", sum.Published, sum.Invalid, valid, len(invalid))
	}
	checkRejects(t, opts.Rejects, invalid)

	deadline := time.Now().Add(time.Duration(max(60, n/500)) * time.Second)
	for {
		unique, total, bad := sink.counts()
		if unique == valid {
			t.Logf("%d SETs delivered (%d requests) %s after the backfill started", unique, total, time.Since(start).Round(time.Millisecond))
			if total != unique || bad != 0 {
				t.Errorf("%d requests for %d distinct jti, %d bad SETs: a healthy receiver should get each SET once", total, unique, bad)
			}
			break
		}
		if unique > valid || time.Now().After(deadline) {
			t.Fatalf("receiver has %d distinct jti (%d requests, %d bad), want %d", unique, total, bad, valid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
