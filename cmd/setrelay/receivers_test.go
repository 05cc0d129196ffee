package main

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// TestReceiversUnblock: the command refuses an unknown receiver (exit 2),
// says what is missing before any relay ran, shows a blocked receiver with
// its fix, and writes the probe request the relays watch for.
func TestReceiversUnblock(t *testing.T) {
	j := testenv.StartJetStream(t, queue.Config{}, "local")
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	t.Setenv("NATS_URL", j.URL())

	if code, _, stderr := runCLI(t, "", "receivers", "unblock", "nope", "--config", rc.File); code != 2 || !strings.Contains(stderr, "local") {
		t.Fatalf("unknown receiver: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runCLI(t, "", "receivers", "unblock", "local", "--config", rc.File); code != 1 || !strings.Contains(stderr, worker.StateBucket) {
		t.Fatalf("before any relay: exit %d, stderr %q", code, stderr)
	}

	ctx := context.Background()
	kv, err := j.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: worker.StateBucket})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "local.state", []byte(`{"state":"blocked","reason":"token_config","since":"2026-11-30T08:00:00Z","fix":"check receivers[0] (\"local\").auth"}`)); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "receivers", "status", "--config", rc.File)
	if code != 0 || !strings.Contains(stdout, "blocked") || !strings.Contains(stdout, "token_config") || !strings.Contains(stdout, "receivers[0]") {
		t.Fatalf("status: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	code, stdout, stderr = runCLI(t, "", "receivers", "unblock", "local", "--config", rc.File)
	if code != 0 || !strings.Contains(stdout, "probe of local requested") {
		t.Fatalf("unblock: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, err := kv.Get(ctx, "local.unblock"); err != nil {
		t.Fatalf("no probe request recorded: %v", err)
	}
}
