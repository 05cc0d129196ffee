package main

import (
	"context"
	"os"
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

// TestReceiversCommandsNeedNoReceiverSecrets: the blocked receiver's fix
// line tells the operator to run 'setrelay receivers unblock NAME --config
// FILE' from a shell. With the relay's file writing the endpoint and the
// client secret as ${NAME} (as configs/govuk.yaml does), both receivers
// commands refused to load it unless the receiver's client secret was
// exported in that shell, although they only read and write the state
// bucket. They load it as the other queue tools do.
func TestReceiversCommandsNeedNoReceiverSecrets(t *testing.T) {
	j := testenv.StartJetStream(t, queue.Config{}, "local")
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	data, err := os.ReadFile(rc.File)
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(data), "http://127.0.0.1:1/events", "${RCV_SSF_ENDPOINT}", 1) + "    auth: {token_url: \"${RCV_TOKEN_URL}\", client_id: relay, client_secret: \"${RCV_CLIENT_SECRET}\"}\n"
	if err := os.WriteFile(rc.File, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("NATS_URL", j.URL())
	ctx := context.Background()
	if _, err := j.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: worker.StateBucket}); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, "", "receivers", "status", "--config", rc.File); code != 0 || !strings.Contains(stdout, "local\tok") {
		t.Errorf("receivers status without the receiver's variables: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, "", "receivers", "unblock", "local", "--config", rc.File); code != 0 || !strings.Contains(stdout, "probe requested") {
		t.Errorf("receivers unblock without the receiver's variables: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, _, stderr := runCLI(t, "", "receivers", "status"); code != exitUsage || !strings.Contains(stderr, "--config is required") {
		t.Errorf("receivers status without --config: exit %d %s", code, stderr)
	}
}

// TestReceiversNATSURLFlag: status, dlq, publish and backfill take
// --nats-url to reach NATS from where the operator is (a bastion, a port
// forward); the receivers commands took only NATS_URL.
func TestReceiversNATSURLFlag(t *testing.T) {
	j := testenv.StartJetStream(t, queue.Config{}, "local")
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	if _, err := j.JS.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: worker.StateBucket}); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runCLI(t, "", "receivers", "status", "--config", rc.File, "--nats-url", j.URL()); code != 0 || !strings.Contains(stdout, "local\tok") {
		t.Errorf("receivers status --nats-url: exit %d\n%s%s", code, stdout, stderr)
	}
	if code, stdout, stderr := runCLI(t, "", "receivers", "unblock", "local", "--config", rc.File, "--nats-url", j.URL()); code != 0 || !strings.Contains(stdout, "probe requested") {
		t.Errorf("receivers unblock --nats-url: exit %d\n%s%s", code, stdout, stderr)
	}
}
