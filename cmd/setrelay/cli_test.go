package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/receiver"
)

// runCLI executes the command line in-process, as main does.
func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// generate writes a key with `keys generate` and returns its path.
func generate(t *testing.T, alg, id string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	args := []string{"keys", "generate", "--alg", alg, "--out", path}
	if id != "" {
		args = append(args, "--id", id)
	}
	if code, _, stderr := runCLI(t, "", args...); code != 0 {
		t.Fatalf("keys generate: exit %d: %s", code, stderr)
	}
	return path
}

func TestKeysGenerate(t *testing.T) {
	path := generate(t, "ES256", "k-1")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)

	code, _, stderr := runCLI(t, "", "keys", "generate", "--alg", "ES256", "--out", path)
	if code != exitUsage || !strings.Contains(stderr, "already exists; pass --force") {
		t.Errorf("overwrite without --force: exit %d, %s", code, stderr)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the existing key was modified")
	}
	// --force replaces it and fixes a too-open mode.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCLI(t, "", "keys", "generate", "--alg", "EdDSA", "--out", path, "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d: %s", code, stderr)
	}
	if after, _ := os.ReadFile(path); bytes.Equal(before, after) {
		t.Error("--force did not replace the key")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after --force %v", fi.Mode().Perm())
	}
	if !strings.Contains(stdout, "key id: ") || !strings.Contains(stdout, "setrelay keys pem --key") {
		t.Errorf("stdout does not say what to do next: %s", stdout)
	}
	// The key is written to a temporary file and put in place whole: none
	// of those is left behind, whether the write succeeded or was refused.
	if ents, err := os.ReadDir(filepath.Dir(path)); err != nil || len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v (%v), want only the key", names, err)
	}

	for _, args := range [][]string{
		{"keys", "generate", "--alg", "HS256", "--out", filepath.Join(t.TempDir(), "x")},
		{"keys", "generate", "--alg", "none", "--out", filepath.Join(t.TempDir(), "x")},
		{"keys", "generate"},
	} {
		if code, _, _ := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestKeysGenerateIfMissing: the compose stack runs key generation on
// every start, so an existing key must survive it and the run must succeed.
func TestKeysGenerateIfMissing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.pem")
	code, stdout, stderr := runCLI(t, "", "keys", "generate", "--alg", "ES256", "--out", path, "--if-missing")
	if code != 0 || !strings.Contains(stdout, "wrote ES256 private key") {
		t.Fatalf("first run: exit %d, %q, %s", code, stdout, stderr)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file after the first run: %v, %v", fi, err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o400); err != nil { // as an operator might lock it down
		t.Fatal(err)
	}
	code, stdout, stderr = runCLI(t, "", "keys", "generate", "--alg", "RS256", "--out", path, "--if-missing")
	if code != 0 || !strings.Contains(stdout, "already exists; left as it is") {
		t.Fatalf("second run: exit %d, %q, %s", code, stdout, stderr)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("--if-missing replaced an existing key")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o400 {
		t.Errorf("--if-missing changed the mode to %v", fi.Mode().Perm())
	}
	if code, _, stderr := runCLI(t, "", "keys", "generate", "--out", path, "--if-missing", "--force"); code != exitUsage || !strings.Contains(stderr, "give one of them") {
		t.Errorf("--if-missing with --force: exit %d, %s", code, stderr)
	}
	// Only an existing file is left alone: a key that cannot be written
	// (its directory cannot be created: a file is in the way) is still an
	// error.
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := runCLI(t, "", "keys", "generate", "--out", filepath.Join(blocker, "k.pem"), "--if-missing"); code == 0 {
		t.Error("--if-missing succeeded although the key could not be written")
	}
}

func TestKeysJWKSAndPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			path := generate(t, alg, "kid-"+alg)
			code, jwksOut, stderr := runCLI(t, "", "keys", "jwks", "--key", path, "--kid", "kid-"+alg, "--alg", alg)
			if code != 0 {
				t.Fatalf("keys jwks: %d %s", code, stderr)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(jwksOut), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 || set.Keys[0].KeyID != "kid-"+alg || set.Keys[0].Algorithm != alg || set.Keys[0].Use != "sig" || !set.Keys[0].IsPublic() {
				t.Fatalf("JWKS = %s", jwksOut)
			}
			if strings.Contains(jwksOut, `"d"`) {
				t.Fatal("JWKS contains a private member")
			}

			code, pemOut, stderr := runCLI(t, "", "keys", "pem", "--key", path)
			if code != 0 {
				t.Fatalf("keys pem: %d %s", code, stderr)
			}
			block, _ := pem.Decode([]byte(pemOut))
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("keys pem printed %q", pemOut)
			}
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if !samePublic(t, pub, set.Keys[0].Key) {
				t.Error("PEM and JWKS hold different keys")
			}
		})
	}
}

func samePublic(t *testing.T, a, b any) bool {
	t.Helper()
	ea, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	if !ok {
		t.Fatalf("%T has no Equal", a)
	}
	return ea.Equal(b)
}

func TestKeysJWKSSeveralKeysAndFromConfig(t *testing.T) {
	k1 := generate(t, "RS256", "")
	k2 := generate(t, "ES256", "")
	code, out, stderr := runCLI(t, "", "keys", "jwks", "--key", k1, "--kid", "old", "--key", k2, "--kid", "new")
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 2 || set.Keys[0].KeyID != "old" || set.Keys[1].KeyID != "new" {
		t.Fatalf("JWKS of two keys = %s (%v)", out, err)
	}

	cfgFile := writeConfig(t, k2)
	code, out, stderr = runCLI(t, "", "keys", "jwks", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("jwks --config: %d %s", code, stderr)
	}
	if err := json.Unmarshal([]byte(out), &set); err != nil || len(set.Keys) != 1 || set.Keys[0].KeyID != "cfg-key" || set.Keys[0].Algorithm != "ES256" {
		t.Fatalf("JWKS from config = %s", out)
	}

	if code, _, _ := runCLI(t, "", "keys", "jwks", "--key", k1, "--alg", "ES256", "--alg", "RS256", "--alg", "RS256"); code != exitUsage {
		t.Errorf("mismatched --alg count: exit %d", code)
	}
	if code, _, _ := runCLI(t, "", "keys", "jwks", "--key", k1, "--alg", "ES256"); code != exitUsage {
		t.Errorf("RSA key with --alg ES256: exit %d", code)
	}
	if code, _, _ := runCLI(t, "", "keys", "pem", "--key", k1, "--key", k2); code != exitUsage {
		t.Errorf("keys pem with two keys: exit %d", code)
	}
}

func writeConfig(t *testing.T, keyFile string) string {
	t.Helper()
	y := fmt.Sprintf(`issuer: https://rp.example.gov.uk/
keys: [{id: cfg-key, file: %s, alg: ES256}]
receivers:
  - name: govuk
    endpoint: https://rcv.example/events
    audience: https://inbound.ssf.account.gov.uk/
    key: cfg-key
    send_kid: false
    subject: in_event
`, keyFile)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const sampleIntent = "testdata/sample-intent.json"

func TestSignVerifiesIndependently(t *testing.T) {
	key := generate(t, "ES256", "sig-1")
	_, pemOut, _ := runCLI(t, "", "keys", "pem", "--key", key)
	block, _ := pem.Decode([]byte(pemOut))
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "", "sign", "--key", key, "--kid", "sig-1", "--iss", "https://rp.example/", "--aud", "https://rcv.example/", "--at", "1700000000", sampleIntent)
	if code != 0 {
		t.Fatalf("sign: %d %s", code, stderr)
	}
	compact := strings.TrimSpace(out)
	tok, err := jwt.Parse(compact, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer("https://rp.example/"), jwt.WithAudience("https://rcv.example/"), jwt.WithIssuedAt())
	if err != nil {
		t.Fatalf("golang-jwt rejects the SET: %v", err)
	}
	if tok.Header["typ"] != "secevent+jwt" || tok.Header["kid"] != "sig-1" {
		t.Errorf("header = %v", tok.Header)
	}
	claims := tok.Claims.(jwt.MapClaims)
	if claims["iat"] != float64(1700000000) {
		t.Errorf("iat = %v", claims["iat"])
	}
	if _, has := claims["sub"]; has {
		t.Error("SET carries sub")
	}
	if _, has := claims["exp"]; has {
		t.Error("SET carries exp")
	}
	subID, ok := claims["sub_id"].(map[string]any)
	if !ok || subID["format"] != "iss_sub" {
		t.Errorf("sub_id = %v", claims["sub_id"])
	}

	// Same intent, same receiver name, same --at: byte-identical claims.
	_, again, _ := runCLI(t, "", "sign", "--key", key, "--kid", "sig-1", "--iss", "https://rp.example/", "--aud", "https://rcv.example/", "--at", "1700000000", sampleIntent)
	if strings.Split(compact, ".")[1] != strings.Split(strings.TrimSpace(again), ".")[1] {
		t.Error("re-signing changed the claims")
	}
}

func TestSignDecodeSeedExample(t *testing.T) {
	key := generate(t, "RS256", "")
	data, err := os.ReadFile(sampleIntent)
	if err != nil {
		t.Fatal(err)
	}
	// Read from stdin via "-".
	code, out, stderr := runCLI(t, string(data), "sign", "--key", key, "--iss", "https://idp.example.com/", "--aud", "636C69656E745F6964",
		"--subject-in", "in_event", "--no-kid", "--at", "1508184845", "--decode", "-")
	if code != 0 {
		t.Fatalf("sign --decode: %d %s", code, stderr)
	}
	var doc struct {
		Header map[string]any `json:"header"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--decode output is not JSON: %v\n%s", err, out)
	}
	if doc.Header["typ"] != "secevent+jwt" || doc.Header["alg"] != "RS256" {
		t.Errorf("header = %v", doc.Header)
	}
	if _, has := doc.Header["kid"]; has {
		t.Error("--no-kid still sent kid")
	}
	c := doc.Claims
	if c["iss"] != "https://idp.example.com/" || c["aud"] != "636C69656E745F6964" || c["iat"] != float64(1508184845) {
		t.Errorf("claims = %v", c)
	}
	ev, ok := c["events"].(map[string]any)["https://schemas.openid.net/secevent/risc/event-type/account-disabled"].(map[string]any)
	if !ok || ev["reason"] != "hijacking" {
		t.Fatalf("events = %v", c["events"])
	}
	if subj, ok := ev["subject"].(map[string]any); !ok || subj["sub"] != "7375626A656374" {
		t.Errorf("subject not in the event: %v", ev)
	}
	if _, has := c["sub_id"]; has {
		t.Error("in_event placement also wrote sub_id")
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(fmt.Sprint(c["jti"])) {
		t.Errorf("jti = %v", c["jti"])
	}
}

func TestSignWithConfigReceiver(t *testing.T) {
	key := generate(t, "ES256", "")
	cfgFile := writeConfig(t, key)
	code, out, stderr := runCLI(t, "", "sign", "--config", cfgFile, "--receiver", "govuk", "--decode", "--at", "1700000000", sampleIntent)
	if code != 0 {
		t.Fatalf("%d %s", code, stderr)
	}
	var doc struct {
		Header map[string]any `json:"header"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if _, has := doc.Header["kid"]; has || doc.Header["alg"] != "ES256" {
		t.Errorf("send_kid: false not applied: %v", doc.Header)
	}
	if doc.Claims["aud"] != "https://inbound.ssf.account.gov.uk/" || doc.Claims["iss"] != "https://rp.example.gov.uk/" {
		t.Errorf("claims = %v", doc.Claims)
	}
	if code, _, stderr := runCLI(t, "", "sign", "--config", cfgFile, "--receiver", "nope", sampleIntent); code != exitUsage || !strings.Contains(stderr, "receivers: govuk") {
		t.Errorf("unknown receiver: %d %s", code, stderr)
	}
}

func TestSignBadIntentReportsEveryProblem(t *testing.T) {
	key := generate(t, "ES256", "")
	bad := `{"id":"","type":"risc.account-disabld","subject":{"format":"email","email":"a@example.com","extra":1},"bogus":true}`
	code, stdout, stderr := runCLI(t, bad, "sign", "--key", key, "--iss", "https://rp.example/", "--aud", "a")
	if code != exitUsage {
		t.Fatalf("exit %d, want 2; stderr: %s", code, stderr)
	}
	if stdout != "" {
		t.Errorf("printed a SET for a bad intent: %s", stdout)
	}
	for _, want := range []string{"invalid intent (4 problems)", "  id: ", "  type: ", "  subject.extra: ", "  bogus: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "setrelay: invalid intent") {
		t.Errorf("problems printed twice:\n%s", stderr)
	}

	code, _, stderr = runCLI(t, "{", "sign", "--key", key, "--iss", "https://rp.example/", "--aud", "a")
	if code != exitUsage || !strings.Contains(stderr, "invalid JSON") {
		t.Errorf("truncated JSON: %d %s", code, stderr)
	}
}

func TestSignFlagProblemsAllReported(t *testing.T) {
	code, _, stderr := runCLI(t, "", "sign", "--subject-in", "top", "--at", "-5", sampleIntent)
	if code != exitUsage {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"5 problems", "--iss is required", "--aud is required", `--subject-in "top"`, "--at must be", "--key is required"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	key := generate(t, "ES256", "")
	if code, _, stderr := runCLI(t, "", "sign", "--key", key, "--iss", "https://rp.example/", "--aud", "y", "missing.json"); code != exitUsage || !strings.Contains(stderr, "missing.json") {
		t.Errorf("missing intent file: %d %s", code, stderr)
	}
	// --iss follows the configuration's issuer rule (config.IssuerProblem):
	// a value the relay would refuse is refused here too.
	for _, iss := range []string{"x", "rp.example.gov.uk", "https://"} {
		code, _, stderr := runCLI(t, "", "sign", "--key", key, "--iss", iss, "--aud", "y", sampleIntent)
		if code != exitUsage || !strings.Contains(stderr, "--iss must be an absolute URL") {
			t.Errorf("--iss %q: exit %d: %s", iss, code, stderr)
		}
	}
}

func TestUsageErrorsExitTwo(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"keys", "nope"},
		{"sign", "--bogus"},
		{"version", "extra"},
		{"run"},
		{"provision"},
		{"--log-level", "loud", "run", "--config", "x.yaml"},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr)
		}
	}
}

func TestRunReportsEveryConfigProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	bad := "issuer: rp\nkeys: [{id: k, file: k.pem, alg: HS256}]\nreceivers:\n  - name: a b\n    endpoint: http://x/\n    audience: a\n    key: k2\n"
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "", "run", "--config", path)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2: %s", code, stderr)
	}
	for _, want := range []string{"invalid configuration in " + path, "issuer: must be an absolute URL", "keys[0].alg:", "receivers[0].name:", "receivers[0].endpoint: uses http://", `receivers[0].key: no key with id "k2"`} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// A missing file is an input mistake like the others: exit 2, and say
	// where to start from. Every command taking --config behaves the same.
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, args := range [][]string{
		{"run", "--config", missing},
		{"keys", "jwks", "--config", missing},
		{"provision", "--config", missing},
	} {
		code, _, stderr := runCLI(t, "", args...)
		if code != exitUsage || !strings.Contains(stderr, "none.yaml") || !strings.Contains(stderr, "does not exist") || !strings.Contains(stderr, "configs/") {
			t.Errorf("%v with a missing config file: exit %d: %s", args[:len(args)-1], code, stderr)
		}
	}
}

func TestVersionAndSchema(t *testing.T) {
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "setrelay ") {
		t.Errorf("version: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "schema")
	var schema map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &schema) != nil || schema["$schema"] == nil {
		t.Errorf("schema: %d, not a JSON Schema: %.200s", code, out)
	}
}

// TestHelpTeaches holds every command to a Short, a Long and an Example
// with real commands.
func TestHelpTeaches(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() == "help" || c.Name() == "completion" || strings.HasPrefix(c.CommandPath(), "setrelay completion") {
			return
		}
		if c.Short == "" || c.Long == "" || !strings.Contains(c.Example, "setrelay ") {
			t.Errorf("%q lacks Short, Long or an Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	code, out, _ := runCLI(t, "", "sign", "--help")
	if code != 0 || !strings.Contains(out, "Examples:") || !strings.Contains(out, "--subject-in") {
		t.Errorf("sign --help: %d\n%s", code, out)
	}
}

// syncBuffer is a bytes.Buffer safe for the receiver's logger and the test
// to use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReceiverCommand(t *testing.T) {
	key := generate(t, "ES256", "rk")
	_, jwks, _ := runCLI(t, "", "keys", "jwks", "--key", key, "--kid", "rk")
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwksFile, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout bytes.Buffer
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"receiver", "--listen", "127.0.0.1:0", "--issuer", "https://rp.example/", "--audience", "aud",
			"--no-auth", "--jwks-file", jwksFile, "--mode", "sub_id", "--reject-txn-prefix", "bad-", "--seed", "7"}, strings.NewReader(""), &stdout, &stderr)
	}()
	addr := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	var base string
	for deadline := time.Now().Add(10 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		base = addr.FindString(stderr.String())
	}
	if base == "" {
		t.Fatalf("receiver did not log its address: %s", stderr.String())
	}

	_, jws, _ := runCLI(t, "", "sign", "--key", key, "--kid", "rk", "--iss", "https://rp.example/", "--aud", "aud", sampleIntent)
	req, err := http.NewRequest(http.MethodPost, base+"/events", strings.NewReader(strings.TrimSpace(jws)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/secevent+jwt")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("push to the receiver command: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("receiver exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receiver did not stop")
	}
	var stats receiver.Stats
	if err := json.Unmarshal(stdout.Bytes(), &stats); err != nil {
		t.Fatalf("final stats are not JSON: %v\n%s", err, stdout.String())
	}
	if stats.Requests != 1 || stats.Accepted != 1 || len(stats.Violations) != 0 {
		t.Errorf("final stats = %s", stdout.String())
	}

	code, _, stderr2 := runCLI(t, "", "receiver", "--mode", "top", "--fail-rate", "2", "--allow-from", "nope")
	if code != exitUsage || !strings.Contains(stderr2, "--mode") || !strings.Contains(stderr2, "--allow-from") {
		t.Errorf("bad receiver flags: %d %s", code, stderr2)
	}
}

// TestRunCommand runs `setrelay run` in-process against an embedded NATS
// until it is ready, then stops it as SIGTERM would (context cancelled).
func TestRunCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an embedded NATS server")
	}
	key := generate(t, "ES256", "")
	dir := t.TempDir()
	y := fmt.Sprintf(`issuer: https://rp.example/
keys: [{id: run-key, file: %s, alg: ES256}]
nats: {listen: "127.0.0.1:-1", store_dir: %s}
ops: {listen: "127.0.0.1:0"}
worker: {grace_period: 1s}
log: {level: info, format: json}
receivers:
  - {name: r1, endpoint: "http://127.0.0.1:1/events", audience: a, key: run-key, insecure_http: true}
`, key, filepath.Join(dir, "js"))
	cfgFile := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgFile, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	// The context main builds: a real SIGTERM to this process stops it.
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()
	var stdout bytes.Buffer
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"run", "--config", cfgFile}, strings.NewReader(""), &stdout, &stderr)
	}()

	opsAddr := regexp.MustCompile(`"ops":"(127\.0\.0\.1:\d+)"`)
	var ops string
	for deadline := time.Now().Add(20 * time.Second); ops == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := opsAddr.FindStringSubmatch(stderr.String()); m != nil {
			ops = m[1]
		}
	}
	if ops == "" {
		t.Fatalf("run did not log its ops address:\n%s", stderr.String())
	}
	resp, err := http.Get("http://" + ops + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d", resp.StatusCode)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("run exit %d after shutdown:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
	// The signal is logged when it arrives, with its cause, before the
	// shutdown steps: an operator sees that the process heard it.
	logs := stderr.String()
	req := strings.Index(logs, `"msg":"shutdown requested`)
	if req < 0 || !strings.Contains(logs, `"cause":"terminated signal received"`) || req > strings.Index(logs, `"msg":"stopped"`) {
		t.Errorf("no shutdown-requested line naming the signal before the stop:\n%s", logs)
	}
	// The service logs JSON lines, one object per line.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Errorf("not a JSON log line: %q", line)
		}
	}
}

// An unusable OTEL_* environment is the operator's to fix, like a bad
// flag: exit status 2, with the variable named.
func TestBadTracingEnvironmentIsAUsageError(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "bogus")
	code, _, stderr := runCLI(t, "", "demo", "--count", "1")
	if code != exitUsage || !strings.Contains(stderr, "OTEL_TRACES_EXPORTER") {
		t.Fatalf("exit %d, stderr %q; want %d naming OTEL_TRACES_EXPORTER", code, stderr, exitUsage)
	}
}

// TestMissingArgumentShowsUsageLine: 'setrelay receivers unblock' without
// its NAME said only "accepts 1 arg(s), received 0", which does not say
// which argument. The usage line names it.
func TestMissingArgumentShowsUsageLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"receivers", "unblock"}, "Usage: setrelay receivers unblock NAME --config FILE"},
		{[]string{"dlq", "show"}, "Usage: setrelay dlq show SEQ"},
		{[]string{"streams", "show"}, "Usage: setrelay streams show"},
	} {
		code, _, stderr := runCLI(t, "", tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q in:\n%s", tc.args, code, tc.want, stderr)
		}
	}
}
