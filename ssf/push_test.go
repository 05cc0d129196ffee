package ssf_test

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
	"github.com/setrelay/setrelay/worker"
)

// pushReceiver is an RFC 8935 receiver over TLS that records every SET
// and the Authorization header it came with.
type pushReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	sets []string
	auth []string
}

func newPushReceiver(t testing.TB) *pushReceiver {
	r := &pushReceiver{}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if req.Header.Get("Content-Type") != "application/secevent+jwt" {
			w.WriteHeader(400)
			return
		}
		r.mu.Lock()
		r.sets = append(r.sets, string(b))
		r.auth = append(r.auth, req.Header.Get("Authorization"))
		r.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *pushReceiver) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(r.srv.Certificate())
	return p
}

func (r *pushReceiver) got() ([]string, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sets), slices.Clone(r.auth)
}

func (r *pushReceiver) count() int { s, _ := r.got(); return len(s) }

func startDispatcher(t testing.TB, x *tx, tune ...func(*ssf.Dispatcher)) *ssf.Dispatcher {
	t.Helper()
	d := ssf.NewDispatcher(x.srv, worker.Deps{JS: x.js.JS, Log: zap.NewNop(), Registerer: prometheus.NewRegistry()}, nil)
	d.GracePeriod = time.Second
	for _, f := range tune {
		f(d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d
}

func TestPushStreamLifecycle(t *testing.T) {
	rcv := newPushReceiver(t)
	x := newTX(t, txOptions{RootCAs: rcv.roots(), MinVerify: time.Hour})
	d := startDispatcher(t, x)

	var st map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
		"events_requested": []string{caepType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events", "authorization_header": "Bearer rcv-secret"},
	}, &st)
	id := st["stream_id"].(string)
	eventually(t, 2*time.Second, "the dispatcher serves the new stream", func() bool { return slices.Contains(d.Serving(), id) })

	x.publish(sessionRevoked("push-1", "one@example.com"), sessionRevoked("push-2", "two@example.com"),
		&intent.Intent{ID: "push-risc", Type: "risc.account-disabled", Subject: map[string]any{"format": "email", "email": "one@example.com"}})
	x.must(204, "POST", "/ssf/verify", tokenA, map[string]any{"stream_id": id, "state": "push-state"}, nil)
	eventually(t, 10*time.Second, "3 SETs pushed", func() bool { return rcv.count() >= 3 })
	time.Sleep(200 * time.Millisecond)
	sets, auth := rcv.got()
	if len(sets) != 3 {
		t.Fatalf("%d SETs pushed, want 3 (2 events and the verification)", len(sets))
	}
	verified := false
	for i, compact := range sets {
		if auth[i] != "Bearer rcv-secret" {
			t.Fatalf("push %d sent Authorization %q, want the receiver's header", i, auth[i])
		}
		c := x.verifiedClaims(compact, audA)
		typ, ev := eventOf(c)
		switch typ {
		case caepType:
		case "https://schemas.openid.net/secevent/ssf/event-type/verification":
			verified = ev["state"] == "push-state" && c["sub_id"].(map[string]any)["id"] == id
		default:
			t.Fatalf("unrequested event pushed: %s", typ)
		}
	}
	if !verified {
		t.Fatal("no verification SET with the state and the stream's sub_id")
	}

	// A new header is used from the next push on.
	x.must(200, "PATCH", "/ssf/streams", tokenA, map[string]any{"stream_id": id,
		"delivery": map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events", "authorization_header": "Bearer rotated"}}, nil)
	time.Sleep(300 * time.Millisecond) // the watch sees the change
	x.publish(sessionRevoked("push-3", "one@example.com"))
	eventually(t, 10*time.Second, "the 4th SET", func() bool { return rcv.count() >= 4 })
	_, auth = rcv.got()
	if auth[3] != "Bearer rotated" {
		t.Fatalf("after PATCH the header is %q", auth[3])
	}

	// Paused: nothing is pushed; enabled: the held SET arrives.
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)
	eventually(t, 2*time.Second, "the dispatcher stops pushing", func() bool { return !slices.Contains(d.Serving(), id) })
	x.publish(sessionRevoked("push-held", "one@example.com"))
	time.Sleep(500 * time.Millisecond)
	if n := rcv.count(); n != 4 {
		t.Fatalf("a paused stream pushed: %d SETs", n)
	}
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	eventually(t, 10*time.Second, "the held SET after enabling", func() bool { return rcv.count() == 5 })

	// Deleted: the dispatcher stops, and nothing more is pushed.
	x.must(204, "DELETE", "/ssf/streams?stream_id="+id, tokenA, nil, nil)
	eventually(t, 2*time.Second, "the dispatcher stops serving the deleted stream", func() bool { return !slices.Contains(d.Serving(), id) })
	x.publish(sessionRevoked("push-after-delete", "one@example.com"))
	time.Sleep(500 * time.Millisecond)
	if n := rcv.count(); n != 5 {
		t.Fatalf("a deleted stream got %d SETs", n)
	}
}

func pushTLS(r *pushReceiver) push.TLSConfig { return push.TLSConfig{RootCAs: r.roots()} }

// The dispatcher reports every stream by method and status, and what each
// stream's consumer holds.
func TestStreamGauges(t *testing.T) {
	reg := prometheus.NewRegistry()
	x := newTX(t, txOptions{Registry: reg})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.createPoll(tokenB, caepType)
	x.publish(sessionRevoked("g-1", "a@example.com"), sessionRevoked("g-2", "b@example.com"))
	startDispatcher(t, x)
	gauge := func(name string, labels map[string]string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue next
					}
				}
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	eventually(t, 5*time.Second, "the gauges", func() bool {
		return gauge("setrelay_ssf_streams", map[string]string{"method": ssf.MethodPoll, "status": "enabled"}) == 2 &&
			gauge("setrelay_ssf_stream_pending", map[string]string{"stream": id}) == 2
	})
}

// A stream whose registry entry is gone but whose consumer is not (the
// API's process died between the two) loses its consumer to the
// dispatcher, so no backlog is held for a stream that no longer exists.
func TestDispatcherRemovesConsumerOfDeletedStream(t *testing.T) {
	x := newTX(t, txOptions{})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	startDispatcher(t, x)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := x.js.JS.KeyValue(ctx, ssf.StreamsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the orphaned consumer removed", func() bool {
		_, err := x.js.JS.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ssf.ReceiverName(id)))
		return err != nil
	})
}
