package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestKeysGenerateCreatesKeyDir: the README's first command writes to
// keys/, which a fresh checkout does not have. It is created, owner-only,
// since it holds private keys. The umask is cleared so it cannot be what
// makes the mode 0700.
func TestKeysGenerateCreatesKeyDir(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	dir := filepath.Join(t.TempDir(), "keys")
	out := filepath.Join(dir, "x.pem")
	code, stdout, stderr := runCLI(t, "", "keys", "generate", "--alg", "ES256", "--out", out)
	if code != 0 {
		t.Fatalf("keys generate into a missing directory: exit %d: %s", code, stderr)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("keys/ has mode %#o, want 0700", fi.Mode().Perm())
	}
	if kf, err := os.Stat(out); err != nil || kf.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", kf, err)
	}
	if !strings.Contains(stdout, "wrote ES256 private key to "+out) {
		t.Errorf("stdout: %s", stdout)
	}
}

// TestKeysGeneratedIDComesBack: a key generated with --id is listed by
// 'keys jwks --key' with that id, not its thumbprint; a --kid that
// disagrees with the file is refused with both ids named.
func TestKeysGeneratedIDComesBack(t *testing.T) {
	path := generate(t, "ES256", "rp-2026-11")
	code, out, stderr := runCLI(t, "", "keys", "jwks", "--key", path)
	if code != 0 {
		t.Fatalf("keys jwks: exit %d: %s", code, stderr)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "rp-2026-11" {
		t.Fatalf("JWKS = %s (%v); want kid rp-2026-11", out, err)
	}
	code, _, stderr = runCLI(t, "", "keys", "jwks", "--key", path, "--kid", "other")
	if code != exitUsage || !strings.Contains(stderr, `"other"`) || !strings.Contains(stderr, "rp-2026-11") {
		t.Errorf("disagreeing --kid: exit %d: %s", code, stderr)
	}
}

// TestKeyFileReadableByOthersRefused: a private key readable by group or
// others is refused by every command that loads keys (exit 2, naming the
// file and the fix), unless --insecure-key-permissions or the key's
// insecure_permissions setting allows it, which then warns.
func TestKeyFileReadableByOthersRefused(t *testing.T) {
	path := generate(t, "ES256", "")
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "", "keys", "pem", "--key", path)
	if code != exitUsage || !strings.Contains(stderr, path) || !strings.Contains(stderr, "chmod 600") {
		t.Errorf("keys pem on a 0644 key: exit %d: %s", code, stderr)
	}
	code, out, stderr := runCLI(t, "", "keys", "pem", "--key", path, "--insecure-key-permissions")
	if code != 0 || !strings.Contains(out, "PUBLIC KEY") || !strings.Contains(stderr, "warning: ") {
		t.Errorf("keys pem --insecure-key-permissions: exit %d: %s / %s", code, out, stderr)
	}

	cfg := writeConfig(t, path)
	// Bounded: were the key accepted, run would start the relay and serve
	// until its context ends; the test must then fail, not hang.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var runOut, runErr bytes.Buffer
	code = execute(ctx, []string{"run", "--config", cfg}, strings.NewReader(""), &runOut, &runErr)
	stderr = runErr.String()
	if code != exitUsage || !strings.Contains(stderr, "keys[0].file") || !strings.Contains(stderr, "readable by group or others") {
		t.Errorf("run with a 0644 key: exit %d: %s", code, stderr)
	}
	code, _, stderr = runCLI(t, "", "keys", "jwks", "--config", cfg)
	if code != exitUsage {
		t.Errorf("keys jwks --config with a 0644 key: exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	allowed := strings.Replace(string(b), "alg: ES256}", "alg: ES256, insecure_permissions: true}", 1)
	if err := os.WriteFile(cfg, []byte(allowed), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runCLI(t, "", "keys", "jwks", "--config", cfg)
	if code != 0 || !strings.Contains(out, "cfg-key") || !strings.Contains(stderr, "warning: ") {
		t.Errorf("keys jwks --config with insecure_permissions: exit %d: %s / %s", code, out, stderr)
	}
}

// TestGitIgnoresKeysAndData: the README's commands write private keys to
// keys/ and the JetStream store to data/ in the checkout; git must never
// offer to commit them.
func TestGitIgnoresKeysAndData(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, ".gitignore")); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("git", "-C", root, "rev-parse", "--git-dir").Run(); err != nil {
		t.Skip("not a git checkout")
	}
	for _, p := range []string{"keys/rp-2026-11.pem", "data/jetstream/x", "keys/local-1.pem"} {
		cmd := exec.Command("git", "check-ignore", "--no-index", "-q", p)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf("git does not ignore %s (%v); add it to .gitignore", p, err)
		}
	}
	// And the check can fail: a source file is not ignored.
	cmd := exec.Command("git", "check-ignore", "--no-index", "-q", "cmd/setrelay/main.go")
	cmd.Dir = root
	if cmd.Run() == nil {
		t.Error("git check-ignore reports main.go as ignored; the check is broken")
	}
}
