package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/relay"
)

// faultyReceiver refuses every SET with invalid_audience until fixed, and
// records the jti of each SET it refused or accepted.
type faultyReceiver struct {
	fixed    atomic.Bool
	mu       sync.Mutex
	refused  []string
	accepted []string
}

func (f *faultyReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	claims := jwt.MapClaims{}
	// The signature is checked elsewhere (relay tests); here only the jti
	// matters.
	_, _, err := jwt.NewParser().ParseUnverified(string(b), claims)
	jti, _ := claims["jti"].(string)
	if err != nil || jti == "" {
		http.Error(w, `{"err":"invalid_request"}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.fixed.Load() {
		f.refused = append(f.refused, jti)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"err":"invalid_audience","description":"audience not recognised"}`))
		return
	}
	f.accepted = append(f.accepted, jti)
	w.WriteHeader(http.StatusAccepted)
}

func (f *faultyReceiver) jtis() (refused, accepted []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.refused...), append([]string(nil), f.accepted...)
}

// TestDLQReplayDeliversAfterTheFix runs the relay against a receiver that
// refuses the audience, so the intent is dead-lettered (after the three
// attempts that tell one intent's problem from a receiver-wide one); once
// the receiver is fixed, `dlq replay` delivers it, as a SET with a new jti.
func TestDLQReplayDeliversAfterTheFix(t *testing.T) {
	rcv := &faultyReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	cfg := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: srv.URL + "/events", Concurrency: 2, GracePeriod: 2 * time.Second}).Config
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
		<-done
	}()
	url := svc.ClientURL()

	if code, out, stderr := runCLI(t, goodIntent, "publish", "--nats-url", url); code != 0 {
		t.Fatalf("publish: %d %s %s", code, out, stderr)
	}
	var seq string
	waitFor(t, "the dead letter", func() bool {
		_, out, _ := runCLI(t, "", "dlq", "list", "--nats-url", url, "--receiver", "local", "--reason", "invalid_audience")
		m := regexp.MustCompile(`(?m)^(\d+)\s+\S+\s+local\s+invalid_audience\s+400\s+invalid_audience\s+3\s+pub-1$`).FindStringSubmatch(out)
		if m != nil {
			seq = m[1]
		}
		return m != nil
	})
	_, out, _ := runCLI(t, "", "dlq", "show", seq, "--nats-url", url)
	if !strings.Contains(out, "audience not recognised") || !strings.Contains(out, `"id": "pub-1"`) {
		t.Errorf("show:\n%s", out)
	}

	rcv.fixed.Store(true)
	if code, out, stderr := runCLI(t, "", "dlq", "replay", seq, "--nats-url", url); code != 0 || !strings.Contains(out, "replayed seq="+seq) {
		t.Fatalf("replay: %d %s %s", code, out, stderr)
	}
	waitFor(t, "the replayed SET", func() bool { _, acc := rcv.jtis(); return len(acc) == 1 })
	refused, accepted := rcv.jtis()
	if len(refused) != 3 || refused[2] != refused[0] || accepted[0] == refused[0] {
		t.Errorf("refused jti %v, accepted jti %v: the replay must carry a new jti", refused, accepted)
	}
	if _, out, _ := runCLI(t, "", "dlq", "list", "--nats-url", url); !strings.Contains(out, "no dead letters match") {
		t.Errorf("the dead letter is still listed after the replay:\n%s", out)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
