package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// writeLiveConfig writes a configuration whose only receiver is "live",
// on the NATS server at url.
func writeLiveConfig(t *testing.T, url string) string {
	t.Helper()
	y := fmt.Sprintf(`issuer: https://rp.example/
keys: [{id: k, file: k.pem, alg: ES256}]
nats: {url: %q}
log: {level: info}
receivers:
  - {name: live, endpoint: "https://rcv.example/events", audience: a, key: k}
`, url)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProvisionPruneRemovesOrphan: a receiver "gone" was removed from the
// configuration but its consumer still holds every intent. provision warns
// with the exact prune command; --prune lists the orphan with its pending
// count, refuses without a terminal or --yes, and with --yes deletes it, after
// which the intents stream (Interest retention) holds only what the live
// receiver still needs.
func TestProvisionPruneRemovesOrphan(t *testing.T) {
	url, js := startQueueForCLI(t, "live", "gone")
	var ndjson strings.Builder
	for i := range 10 {
		fmt.Fprintf(&ndjson, `{"id":"prune-%d","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`+"\n", i)
	}
	if code, out, stderr := runCLI(t, ndjson.String(), "publish", "--nats-url", url); code != 0 {
		t.Fatalf("publish: exit %d: %s %s", code, out, stderr)
	}
	// The live receiver settles 4 of the 10; "gone" settles nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("live"))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	if acked != 4 {
		t.Fatalf("acked %d, want 4", acked)
	}
	if n := intentCount(t, js); n != 10 {
		t.Fatalf("before pruning the stream holds %d intents, want all 10 (the orphan needs them)", n)
	}

	cfg := writeLiveConfig(t, url)
	wantCmd := "setrelay provision --prune --config " + cfg
	code, _, stderr := runCLI(t, "", "provision", "--config", cfg)
	if code != 0 || !strings.Contains(stderr, wantCmd) || !strings.Contains(stderr, `rcv_gone (receiver \"gone\", 10 pending)`) {
		t.Fatalf("provision: exit %d; the orphan warning lacks %q or the pending count:\n%s", code, wantCmd, stderr)
	}

	// Without a terminal and without --yes: listed, not deleted.
	code, out, stderr := runCLI(t, "", "provision", "--config", cfg, "--prune")
	if code != exitUsage || !strings.Contains(out, "rcv_gone") || !strings.Contains(stderr, "--yes") {
		t.Fatalf("--prune without --yes: exit %d: %s %s", code, out, stderr)
	}
	if n := intentCount(t, js); n != 10 {
		t.Fatalf("a refused prune changed the stream: %d intents", n)
	}
	if !strings.Contains(out, "CONSUMER") || !regexpLine(out, `rcv_gone\s+gone\s+10`) {
		t.Errorf("listing lacks the orphan with its pending count:\n%s", out)
	}

	code, out, stderr = runCLI(t, "", "provision", "--config", cfg, "--prune", "--yes")
	if code != 0 || !strings.Contains(out, `deleted rcv_gone (receiver "gone", 10 pending intents released)`) {
		t.Fatalf("--prune --yes: exit %d: %s %s", code, out, stderr)
	}
	if _, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("gone")); err == nil {
		t.Error("the orphaned consumer still exists")
	}
	// The stream shrinks to what the live receiver still needs.
	deadline := time.Now().Add(10 * time.Second)
	for intentCount(t, js) != 6 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := intentCount(t, js); n != 6 {
		t.Errorf("after pruning the stream holds %d intents, want the 6 the live receiver has not settled", n)
	}
	if _, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("live")); err != nil {
		t.Errorf("the live consumer is gone: %v", err)
	}

	code, out, _ = runCLI(t, "", "provision", "--config", cfg, "--prune", "--yes")
	if code != 0 || !strings.Contains(out, "nothing to prune") {
		t.Errorf("second prune: exit %d: %s", code, out)
	}
	if code, _, stderr := runCLI(t, "", "provision", "--config", cfg, "--yes"); code != exitUsage || !strings.Contains(stderr, "--prune") {
		t.Errorf("--yes without --prune: exit %d: %s", code, stderr)
	}
}

// TestProvisionPruneConfirmOnTerminal: on a terminal, --prune asks, and
// anything but "yes" deletes nothing.
func TestProvisionPruneConfirmOnTerminal(t *testing.T) {
	url, js := startQueueForCLI(t, "live", "gone")
	cfg := writeLiveConfig(t, url)
	code, out, stderr := runCLIOnTTY(t, "no\n", "provision", "--config", cfg, "--prune")
	if code != 0 || !strings.Contains(stderr, "Delete these 1 consumer?") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("answering no: exit %d: %s %s", code, out, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("gone")); err != nil {
		t.Fatalf("a declined prune deleted the consumer: %v", err)
	}
	code, out, stderr = runCLIOnTTY(t, "yes\n", "provision", "--config", cfg, "--prune")
	if code != 0 || !strings.Contains(out, "deleted rcv_gone") {
		t.Fatalf("answering yes: exit %d: %s %s", code, out, stderr)
	}
}

// regexpLine reports whether some line of s matches re.
func regexpLine(s, re string) bool {
	return regexp.MustCompile(`(?m)^` + re + `\s*$`).MatchString(s)
}

// TestProvisionNATSURLFlag: provision, like status and dlq, takes
// --nats-url; it took only NATS_URL.
func TestProvisionNATSURLFlag(t *testing.T) {
	url, js := startQueueForCLI(t)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	if code, out, stderr := runCLI(t, "", "provision", "--config", rc.File, "--nats-url", url); code != 0 {
		t.Fatalf("provision --nats-url: exit %d\n%s%s", code, out, stderr)
	}
	if _, err := js.Consumer(context.Background(), queue.IntentStream, queue.ConsumerName("local")); err != nil {
		t.Errorf("provision --nats-url did not create the receiver's consumer: %v", err)
	}
}

// TestProvisionPruneRefusesAServedConsumer: 'provision --prune' run with a
// configuration that lacks a receiver the running relays still serve (a
// new file not yet rolled out, the wrong file) deleted that receiver's
// consumer under them: the relays stopped delivering to it and went
// unready. A consumer a relay is pulling from is not an orphan; prune
// refuses to delete it and says why.
func TestProvisionPruneRefusesAServedConsumer(t *testing.T) {
	url, js := startQueueForCLI(t, "live", "served")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("served"))
	if err != nil {
		t.Fatal(err)
	}
	// A relay's long poll, as the worker keeps one open on each consumer.
	pulling := make(chan struct{})
	go func() {
		defer close(pulling)
		fctx, fcancel := context.WithTimeout(ctx, 15*time.Second)
		defer fcancel()
		b, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err == nil {
			for range b.Messages() {
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ci, err := cons.Info(ctx)
		if err == nil && ci.NumWaiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pull request never showed in the consumer info")
		}
		time.Sleep(10 * time.Millisecond)
	}

	cfg := writeLiveConfig(t, url)
	code, out, stderr := runCLI(t, "", "provision", "--config", cfg, "--prune", "--yes")
	if code != exitFailure || !strings.Contains(stderr, "rcv_served") || !strings.Contains(stderr, "still pulling") {
		t.Errorf("prune of a consumer a relay pulls from: exit %d, want 1 and why\n%s%s", code, out, stderr)
	}
	if _, err := js.Consumer(ctx, queue.IntentStream, queue.ConsumerName("served")); err != nil {
		t.Errorf("the served consumer was deleted: %v", err)
	}
	cancel()
	<-pulling
}
