package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/ssf"
)

// createStreamOverAPI creates a poll stream as a receiver would, through
// the SSF API of a transmitter on the same JetStream.
func createStreamOverAPI(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	k, _ := signer.GenerateKey(jose.ES256, "k1")
	sg, _ := signer.New(k)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := ssf.New(ctx, ssf.Config{Issuer: "https://tx.example/", Clients: []ssf.Client{{ID: "rcv-1", TokenSHA256: ssf.HashToken("t"), Audience: []string{"https://rcv.example/"}}}},
		ssf.Deps{NC: nc, JS: js, Signer: sg})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	req, _ := http.NewRequest("POST", hs.URL+"/ssf/streams", strings.NewReader(`{"description":"from the test"}`))
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st map[string]any
	if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	return st["stream_id"].(string)
}

func TestStreamsListShowStatusDelete(t *testing.T) {
	url, js := startQueueForCLI(t)
	// Before any process enabled the API there is no registry to read.
	code, out, stderr := runCLI(t, "", "streams", "list", "--nats-url", url)
	if code != 1 || !strings.Contains(stderr, "ssf.enabled") {
		t.Fatalf("list without a registry: %d %q %q", code, out, stderr)
	}
	id := createStreamOverAPI(t, url)

	code, out, stderr = runCLI(t, "", "streams", "list", "--nats-url", url)
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "rcv-1") || !strings.Contains(out, "poll") || !strings.Contains(out, "enabled") {
		t.Fatalf("list: %d %q %q", code, out, stderr)
	}
	code, out, _ = runCLI(t, "", "streams", "show", id, "--nats-url", url)
	var shown map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &shown) != nil || shown["description"] != "from the test" || shown["status"] != "enabled" {
		t.Fatalf("show: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "streams", "status", id, "paused", "--reason", "by phone", "--notify-wait", "200ms", "--nats-url", url)
	if code != 0 || strings.TrimSpace(out) != id+" paused (by phone)" {
		t.Fatalf("status paused: %d %q", code, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ssf.ReceiverName(id)))
	if err != nil || !cons.CachedInfo().Paused {
		t.Fatalf("consumer not paused on the server: %v", err)
	}
	code, out, _ = runCLI(t, "", "streams", "status", id, "--nats-url", url)
	if code != 0 || strings.TrimSpace(out) != id+" paused (by phone)" {
		t.Fatalf("status: %d %q", code, out)
	}
	if code, _, _ := runCLI(t, "", "streams", "status", id, "sleeping", "--nats-url", url); code != 2 {
		t.Fatalf("bad status: exit %d, want 2", code)
	}
	if code, _, _ := runCLI(t, "", "streams", "delete", id, "--nats-url", url); code != 2 {
		t.Fatalf("delete without --yes: exit %d, want 2", code)
	}
	if code, out, _ := runCLI(t, "", "streams", "delete", id, "--yes", "--nats-url", url); code != 0 || !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %d %q", code, out)
	}
	if _, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ssf.ReceiverName(id))); err == nil {
		t.Fatal("consumer still there after delete")
	}
	if code, _, stderr := runCLI(t, "", "streams", "show", id, "--nats-url", url); code != 2 || !strings.Contains(stderr, "no stream") {
		t.Fatalf("show deleted: %d %q", code, stderr)
	}
	if code, out, stderr := runCLI(t, "", "streams", "list", "--nats-url", url); code != 0 || !strings.Contains(out, "no streams") {
		t.Fatalf("empty list: %d %q %q", code, out, stderr)
	}
}
