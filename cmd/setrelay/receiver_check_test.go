package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiverCheck runs `setrelay receiver --check` on files of SETs made
// by `setrelay sign`: one verdict per SET, a retransmission recognised, the
// exit status 1 when any SET is rejected and 0 otherwise, warnings that
// only fail the run under --strict, and --json output.
func TestReceiverCheck(t *testing.T) {
	dir := t.TempDir()
	key := generate(t, "ES256", "rk")
	_, jwks, _ := runCLI(t, "", "keys", "jwks", "--key", key, "--kid", "rk")
	jwksFile := filepath.Join(dir, "jwks.json")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("jwks.json", jwks)
	code, good, stderr := runCLI(t, "", "sign", "--key", key, "--kid", "rk", "--iss", "https://rp.example/", "--aud", "aud", sampleIntent)
	if code != 0 {
		t.Fatalf("sign: %d %s", code, stderr)
	}
	good = strings.TrimSpace(good)
	// GOV.UK puts an eventMetadata event beside the main one: two events,
	// which SSF 1.0 §4.2.1 says a SET should not hold.
	twoEvents := write("two-events.json", `{"id":"two-1","type":"caep.session-revoked","subject":{"format":"opaque","id":"s1"},
		"extra_events":{"https://vocab.account.gov.uk/secevent/v1/eventMetadata":{"source":"test"}}}`)
	code, warned, stderr := runCLI(t, "", "sign", "--key", key, "--kid", "rk", "--iss", "https://rp.example/", "--aud", "aud", twoEvents)
	if code != 0 {
		t.Fatalf("sign: %d %s", code, stderr)
	}
	warned = strings.TrimSpace(warned)
	flags := []string{"receiver", "--issuer", "https://rp.example/", "--audience", "aud", "--jwks-file", jwksFile}

	mixed := write("mixed.txt", "# a comment, then a blank line\n\n"+good+"\nnot-a-jws\n"+good+"\n"+warned+"\n")
	code, out, stderr := runCLI(t, "", append(flags, "--check", mixed)...)
	if code != exitFailure {
		t.Fatalf("exit %d, want 1 (one SET rejected): %s %s", code, out, stderr)
	}
	for _, want := range []string{
		"line 3: accepted jti=",
		"line 4: REJECTED 400 invalid_request\n  - jws_malformed (RFC 8935 §2.1, RFC 7515 §7.1): ",
		"line 5: accepted (identical retransmission of an earlier SET)",
		"line 6: accepted jti=",
		"  warning: events_multiple (SSF 1.0 §4.2.1, RFC 8417 §2.2): 2 events",
		"4 SETs: 3 accepted (1 with warnings), 1 rejected",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	clean := write("clean.txt", good+"\n"+warned)
	if code, out, stderr := runCLI(t, "", append(flags, "--check", clean)...); code != 0 {
		t.Errorf("warnings only: exit %d, want 0: %s %s", code, out, stderr)
	}
	code, out, _ = runCLI(t, "", append(flags, "--check", clean, "--strict")...)
	if code != exitFailure || !strings.Contains(out, "line 2: REJECTED 400 invalid_request jti=") || !strings.Contains(out, "\n  - events_multiple (SSF 1.0 §4.2.1, RFC 8417 §2.2): ") {
		t.Errorf("strict: exit %d, want 1 with events_multiple rejected:\n%s", code, out)
	}

	code, out, stderr = runCLI(t, good+"\n", append(flags, "--check", "-", "--json")...)
	var v struct {
		Line   int    `json:"line"`
		Status int    `json:"status"`
		JTI    string `json:"jti"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Line != 1 || v.Status != 202 || v.JTI == "" {
		t.Errorf("--json from stdin: exit %d, %q %s", code, out, stderr)
	}

	if code, _, stderr := runCLI(t, "", append(flags, "--check", filepath.Join(dir, "missing.txt"))...); code != exitUsage || !strings.Contains(stderr, "--check") {
		t.Errorf("missing file: exit %d, want 2: %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "", "receiver", "--check", clean); code != exitUsage || !strings.Contains(stderr, "--issuer is required") {
		t.Errorf("no issuer: exit %d, want 2 naming --issuer: %s", code, stderr)
	}
}
