package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLocalConfigPublishExampleWorks runs the publish steps written in
// configs/local.yaml's header, as a newcomer would paste them: the echo
// that writes intent.json and the publish command. Only the paths and the
// NATS address (the test's own server) are adapted.
func TestLocalConfigPublishExampleWorks(t *testing.T) {
	const cfgPath = "../../configs/local.yaml"
	b, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	echo := regexp.MustCompile(`(?m)^#\s+echo '(\{.*\})' > intent\.json$`).FindSubmatch(b)
	pub := regexp.MustCompile(`(?m)^#\s+setrelay (publish .*)$`).FindSubmatch(b)
	if echo == nil || pub == nil {
		t.Fatalf("configs/local.yaml no longer shows how to publish (an echo > intent.json and a setrelay publish line)")
	}
	dir := t.TempDir()
	intentFile := filepath.Join(dir, "intent.json")
	if err := os.WriteFile(intentFile, append(echo[1], '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	args := strings.Fields(string(pub[1]))
	for i, a := range args {
		switch a {
		case "configs/local.yaml":
			args[i] = cfgPath
		case "intent.json":
			args[i] = intentFile
		}
	}
	url, js := startQueueForCLI(t, "local")
	args = append(args, "--nats-url", url)
	code, out, stderr := runCLI(t, "", args...)
	if code != 0 || !strings.HasPrefix(out, "stored seq=1 id=") {
		t.Fatalf("setrelay %s: exit %d: %s %s", strings.Join(args, " "), code, out, stderr)
	}
	if n := intentCount(t, js); n != 1 {
		t.Errorf("stream holds %d intents, want 1", n)
	}
}

// TestPublishTakesTheFileAsArgument: 'publish intent.json' reads the file,
// as 'sign intent.json' does, and naming the input twice is refused.
func TestPublishTakesTheFileAsArgument(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	file := filepath.Join(t.TempDir(), "intent.json")
	if err := os.WriteFile(file, []byte(goodIntent), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runCLI(t, "", "publish", "--nats-url", url, file); code != 0 || out != "stored seq=1 id=pub-1\n" {
		t.Fatalf("publish FILE: exit %d: %q %s", code, out, stderr)
	}
	if code, _, stderr := runCLI(t, "", "publish", "--nats-url", url, "--file", file, file); code != exitUsage || !strings.Contains(stderr, "not both") {
		t.Errorf("--file and an argument: exit %d: %s", code, stderr)
	}
	if n := intentCount(t, js); n != 1 {
		t.Errorf("stream holds %d intents, want 1", n)
	}
}

// TestReceiverFlagErrorsNameFlags: the development receiver's mistakes are
// reported with the flags the operator typed, all at once.
func TestReceiverFlagErrorsNameFlags(t *testing.T) {
	t.Setenv("SETRELAY_RECEIVER_CLIENT_SECRET", "")
	code, _, stderr := runCLI(t, "", "receiver", "--listen", "127.0.0.1:0")
	if code != exitUsage {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"--client-id", "--client-secret", "--no-auth", "--issuer is required", "--audience is required", "--jwks-file", "--jwks-url", "--pem"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "set NoAuth") || strings.Contains(stderr, "in-memory keys") {
		t.Errorf("stderr uses the old internal wording:\n%s", stderr)
	}
}
