package ssf_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
	"github.com/setrelay/setrelay/worker"
)

// flakyReceiver refuses the first attempt of every SET whose txn number
// is a multiple of failEvery with a 500, and records the SETs it accepts
// in arrival order.
type flakyReceiver struct {
	srv       *httptest.Server
	failEvery int
	mu        sync.Mutex
	tried     map[string]bool
	accepted  []string
}

func newFlakyReceiver(t *testing.T, failEvery int) *flakyReceiver {
	r := &flakyReceiver{failEvery: failEvery, tried: map[string]bool{}}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		parts := strings.Split(string(b), ".")
		var c struct {
			JTI string `json:"jti"`
			Txn string `json:"txn"`
		}
		if len(parts) == 3 {
			raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(raw, &c)
		}
		n, err := strconv.Atoi(strings.TrimPrefix(c.Txn, "txn-ord-"))
		r.mu.Lock()
		defer r.mu.Unlock()
		if err == nil && n%r.failEvery == 0 && !r.tried[c.JTI] {
			r.tried[c.JTI] = true
			http.Error(w, `{"err":"server_error"}`, http.StatusInternalServerError)
			return
		}
		r.accepted = append(r.accepted, string(b))
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *flakyReceiver) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.accepted...)
}

// SSF 1.0 §8.1.2: a transmitter holding events for a subject must send
// them in the order they were generated. A paused push stream holds 100
// events about 5 subjects; enabled, it delivers them while the receiver
// refuses the first attempt of every 7th. Each refused SET is retried
// before anything stored after it is pushed, so the receiver sees every
// subject's events in stored order, and each SET once.
func TestPushStreamKeepsStoredOrderThroughRetries(t *testing.T) {
	rcv := newFlakyReceiver(t, 7)
	x := newTX(t, txOptions{RootCAs: (&pushReceiver{srv: rcv.srv}).roots(), MinVerify: time.Hour})
	startDispatcher(t, x, func(d *ssf.Dispatcher) {
		d.Retry = worker.RetryPolicy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond}
	})
	var st map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
		"events_requested": []string{caepType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events"},
	}, &st)
	id := st["stream_id"].(string)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)

	const n = 100
	ins := make([]*intent.Intent, n)
	for i := range n {
		ins[i] = sessionRevoked(idN("ord", i), fmt.Sprintf("user%d@example.com", i%5))
		ins[i].Txn = fmt.Sprintf("txn-ord-%d", i)
	}
	x.publish(ins...)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	eventually(t, 60*time.Second, "all 100 held SETs accepted", func() bool { return len(rcv.got()) >= n })
	time.Sleep(200 * time.Millisecond)

	sets := rcv.got()
	if len(sets) != n {
		t.Fatalf("%d SETs accepted, want each of the %d once", len(sets), n)
	}
	last := map[string]int{}
	for _, s := range sets {
		c := x.verifiedClaims(s, audA)
		who := c["sub_id"].(map[string]any)["email"].(string)
		seq, _ := strconv.Atoi(strings.TrimPrefix(c["txn"].(string), "txn-ord-"))
		if p, ok := last[who]; ok && seq <= p {
			t.Fatalf("%s got event %d after event %d: a retry was overtaken", who, seq, p)
		}
		last[who] = seq
	}
	if len(last) != 5 {
		t.Fatalf("events of %d subjects arrived, want 5", len(last))
	}
}
