package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// startQueueForCLI starts an embedded JetStream provisioned for receivers
// and returns its client URL, for the commands' --nats-url.
func startQueueForCLI(t *testing.T, receivers ...string) (string, jetstream.JetStream) {
	t.Helper()
	j := testenv.StartJetStream(t, queue.Config{}, receivers...)
	return j.URL(), j.JS
}

// intentCount is how many messages the intents stream holds.
func intentCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	return testenv.StreamMsgs(t, js, queue.IntentStream)
}

const (
	goodIntent  = `{"id":"pub-1","type":"caep.session-revoked","subject":{"format":"email","email":"alice@example.com"}}`
	goodIntent2 = `{"id":"pub-2","type":"risc.account-disabled","subject":{"format":"email","email":"bob@example.com"}}`
	badIntent   = `{"id":"pub-3","type":"no.such-type","subject":{"format":"email","email":"not-an-email"}}`
)

func TestPublishStoredDuplicateInvalid(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")

	// One pretty-printed object from a file.
	var pretty bytes.Buffer
	pretty.WriteString("{\n  \"id\": \"pub-1\",\n  \"type\": \"caep.session-revoked\",\n  \"subject\": {\"format\": \"email\", \"email\": \"alice@example.com\"}\n}\n")
	file := filepath.Join(t.TempDir(), "intent.json")
	if err := os.WriteFile(file, pretty.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "", "publish", "--nats-url", url, "--file", file)
	if code != 0 || !regexp.MustCompile(`^stored seq=1 id=pub-1\n$`).MatchString(out) {
		t.Fatalf("publish --file: exit %d, %q, %s", code, out, stderr)
	}

	// The same again on stdin is a duplicate, with the original's sequence.
	code, out, _ = runCLI(t, goodIntent, "publish", "--nats-url", url, "-")
	if code != 0 || out != "duplicate seq=1 id=pub-1\n" {
		t.Fatalf("duplicate: exit %d, %q", code, out)
	}

	// NDJSON with a bad line: the good ones are stored, the bad one reported
	// with every problem, exit status 2.
	ndjson := goodIntent + "\n\n" + badIntent + "\n" + goodIntent2 + "\n{broken\n"
	code, out, _ = runCLI(t, ndjson, "publish", "--nats-url", url)
	if code != exitUsage {
		t.Errorf("NDJSON with invalid lines: exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^line 1: duplicate seq=1 id=pub-1$`),
		regexp.MustCompile(`^line 3: invalid: type: .*; subject.email: .*`),
		regexp.MustCompile(`^line 4: stored seq=2 id=pub-2$`),
		regexp.MustCompile(`^line 5: invalid: .+`),
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out)
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}
	// A broken pretty-printed intent is one invalid document.
	code, out, _ = runCLI(t, "{\n  \"id\": \"pub-9\"\n  \"type\": \"caep.session-revoked\"\n}\n", "publish", "--nats-url", url)
	if code != exitUsage || strings.Count(out, "invalid:") != 1 || strings.HasPrefix(out, "line") {
		t.Errorf("broken document: exit %d, %q", code, out)
	}
	if n := intentCount(t, js); n != 2 {
		t.Errorf("stream holds %d intents, want 2", n)
	}
}

func TestPublishUsageAndConnectionErrors(t *testing.T) {
	code, _, stderr := runCLI(t, "", "publish", "--nats-url", "nats://127.0.0.1:1")
	if code != exitUsage || !strings.Contains(stderr, "empty") {
		t.Errorf("empty input: exit %d, %s", code, stderr)
	}
	code, _, stderr = runCLI(t, goodIntent, "publish", "--nats-url", "nats://127.0.0.1:1")
	if code != exitFailure || !strings.Contains(stderr, "connect") {
		t.Errorf("no server: exit %d, %s", code, stderr)
	}
	code, _, _ = runCLI(t, "", "publish", "--file", filepath.Join(t.TempDir(), "missing.json"))
	if code != exitUsage {
		t.Errorf("missing file: exit %d", code)
	}
}
