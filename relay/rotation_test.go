package relay

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// TestRedeliveryAfterRotationKeepsClaimsAndVerifies: a SET the receiver
// answered 503 is still pending when setrelay restarts with the receiver
// switched to a new key (the README's rotation: the new key published
// beside the old one). The redelivery carries the same claims, byte for
// byte (jti, iat and all: at-least-once delivery must let the receiver
// de-duplicate), is signed by the new key with its kid, and verifies with
// jwx against the JWKS the restarted relay serves; the SETs signed with
// the old key before the restart verify against it too.
func TestRedeliveryAfterRotationKeepsClaimsAndVerifies(t *testing.T) {
	var accept atomic.Bool
	var mu sync.Mutex
	var got []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
		if !accept.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer rcv.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: rcv.URL + "/events", GracePeriod: time.Second})
	cfg := rc.Config
	r := &cfg.Receivers[0]
	r.Retry.Initial, r.Retry.Max = 100*time.Millisecond, 200*time.Millisecond
	r.Pause.Threshold = -1

	run := func(until func() bool, publish bool) jwk.Set {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- svc.Run(ctx) }()
		if publish {
			nc, err := nats.Connect(svc.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			js, _ := jetstream.New(nc)
			in, err := intent.Decode([]byte(`{"id":"rot-1","type":"risc.account-disabled","subject":{"format":"email","email":"u@example.com"},"event":{"reason":"hijacking"}}`), intent.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := queue.NewPublisher(js, intent.Options{}).Publish(ctx, in); err != nil {
				t.Fatal(err)
			}
			nc.Close()
		}
		deadline := time.Now().Add(30 * time.Second)
		for !until() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out; receiver got %d requests", count())
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, body := httpGet(t, "http://"+svc.OpsAddr().String()+"/jwks.json")
		set, err := jwk.Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return")
		}
		return set
	}

	// Before: k1 signs; the receiver refuses with 503, twice at least.
	oldSet := run(func() bool { return count() >= 2 }, true)
	before := count()

	// Rotate: k2 (RS256) published beside k1 and used for the receiver.
	f2, _ := testenv.WriteKey(t, filepath.Dir(cfg.Keys[0].File), jose.RS256, "k2")
	cfg.Keys = append(cfg.Keys, cfg.Keys[0])
	cfg.Keys[1].ID, cfg.Keys[1].Alg, cfg.Keys[1].File = "k2", "RS256", f2
	r.Key = "k2"
	accept.Store(true)
	newSet := run(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > before && kidOf(t, got[len(got)-1]) == "k2"
	}, false)

	mu.Lock()
	defer mu.Unlock()
	first, last := got[0], got[len(got)-1]
	if kidOf(t, first) != "k1" || kidOf(t, last) != "k2" {
		t.Fatalf("kids %s then %s, want k1 then k2", kidOf(t, first), kidOf(t, last))
	}
	if newSet.Len() != 2 {
		t.Errorf("the restarted relay publishes %d keys, want k1 and k2", newSet.Len())
	}
	p1, err := jws.Verify([]byte(first), jws.WithKeySet(oldSet, jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("the SET signed before the rotation does not verify: %v", err)
	}
	if _, err := jws.Verify([]byte(first), jws.WithKeySet(newSet, jws.WithRequireKid(true))); err != nil {
		t.Errorf("the SET signed before the rotation does not verify against the new JWKS: %v", err)
	}
	p2, err := jws.Verify([]byte(last), jws.WithKeySet(newSet, jws.WithRequireKid(true)))
	if err != nil {
		t.Fatalf("the redelivery after the rotation does not verify with the served JWKS: %v", err)
	}
	if string(p1) != string(p2) {
		t.Errorf("the redelivery's claims changed with the key:\n before %s\n after  %s", p1, p2)
	}
	var claims map[string]any
	if err := json.Unmarshal(p2, &claims); err != nil || claims["jti"] == nil || claims["iat"] == nil {
		t.Errorf("claims %s (%v)", p2, err)
	}
	t.Logf("%d requests, jti %v", len(got), claims["jti"])
}

func kidOf(t *testing.T, compact string) string {
	t.Helper()
	msg, err := jws.Parse([]byte(compact))
	if err != nil {
		t.Fatal(err)
	}
	kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
	return kid
}
