package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
)

// With the shipped accounts.conf, the relay user runs the SSF API: buckets,
// stream consumers, poll delivery, acks, setErrs dead letters, status
// changes, verification and deletion, without one permission violation;
// the operator user lists and shows the streams.
func TestShippedNATSPermissionsSSF(t *testing.T) {
	srv := startShippedNATS(t)
	url := srv.ClientURL()
	dir := t.TempDir()
	keyFile, _ := testenv.WriteKey(t, dir, jose.ES256, "k1")
	y := fmt.Sprintf(`
issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: {url: %q, user: relay, password: "${RELAY_PASSWORD}"}
ops: {listen: "127.0.0.1:0"}
ssf:
  enabled: true
  listen: 127.0.0.1:0
  poll_ack_wait: 1s
  clients: [{id: r1, token_sha256: %s, audience: https://r1.example/}]
`, keyFile, url, ssf.HashToken("r1-token"))
	cfg, err := config.Parse([]byte(y), filepath.Join(dir, "config.yaml"), func(k string) (string, bool) {
		return natsPasswords["relay"], k == "RELAY_PASSWORD"
	})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("relay user cannot start the relay with ssf.enabled: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	base := "http://" + svc.SSFAddr().String()
	call := func(method, path string, body any, want int) []byte {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer r1-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return b
	}
	var st map[string]any
	_ = json.Unmarshal(call("POST", "/ssf/streams", map[string]any{"events_requested": []string{"https://schemas.openid.net/secevent/risc/event-type/account-disabled"}}, 201), &st)
	id := st["stream_id"].(string)
	call("POST", "/ssf/subjects:remove", map[string]any{"stream_id": id, "subject": map[string]any{"format": "email", "email": "muted@example.com"}}, 204)
	call("POST", "/ssf/verify", map[string]any{"stream_id": id, "state": "s"}, 204)

	_, pjs := connectAs(t, url, "producer", nil)
	for _, who := range []string{"a", "b"} {
		in, _ := intent.Decode([]byte(`{"id":"ssf-perm-`+who+`","type":"risc.account-disabled","subject":{"format":"email","email":"`+who+`@example.com"}}`), intent.Options{})
		if _, err := queue.NewPublisher(pjs, intent.Options{}).Publish(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	var pr struct{ Sets map[string]string }
	deadline := time.Now().Add(10 * time.Second)
	sets := map[string]bool{}
	for len(sets) < 3 && time.Now().Before(deadline) {
		_ = json.Unmarshal(call("POST", "/ssf/poll/"+id, map[string]any{"returnImmediately": true}, 200), &pr)
		for jti := range pr.Sets {
			sets[jti] = true
		}
	}
	if len(sets) != 3 {
		t.Fatalf("polled %d SETs, want 3 (verification and two events)", len(sets))
	}
	var jtis []string
	for jti := range sets {
		jtis = append(jtis, jti)
	}
	call("POST", "/ssf/poll/"+id, map[string]any{"maxEvents": 0, "ack": jtis[:2], "setErrs": map[string]any{jtis[2]: map[string]any{"err": "invalid_request", "description": "no"}}}, 200)
	call("POST", "/ssf/status", map[string]any{"stream_id": id, "status": "paused"}, 200)
	call("POST", "/ssf/status", map[string]any{"stream_id": id, "status": "disabled"}, 200)
	call("POST", "/ssf/status", map[string]any{"stream_id": id, "status": "enabled"}, 200)

	// The operator lists and shows streams, with its read-only rights.
	_, ojs := connectAs(t, url, "operator", nil)
	admin, err := ssf.NewAdmin(ctx, ssf.Config{}, ojs, nil)
	if err != nil {
		t.Fatalf("operator cannot open the registry: %v", err)
	}
	if all, err := admin.List(ctx); err != nil || len(all) != 1 {
		t.Fatalf("operator list: %v %v", all, err)
	}
	if _, err := admin.Get(ctx, id); err != nil {
		t.Fatalf("operator show: %v", err)
	}

	call("DELETE", "/ssf/streams?stream_id="+id, nil, 204)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("relay Run: %v", err)
	}
	for _, e := range logs.All() {
		if strings.Contains(strings.ToLower(e.Message+fmt.Sprint(e.Context)), "permission") {
			t.Errorf("permission problem logged: %s %v", e.Message, e.Context)
		}
	}
}
