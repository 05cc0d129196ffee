package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeRoutingConfig writes a configuration with two receivers, each
// requesting one type, on the NATS server at url. The credentials of one
// are variables and a file that this test's process does not have, as a
// producer does not: publish and backfill must not need them.
func writeRoutingConfig(t *testing.T, url string) string {
	t.Helper()
	y := fmt.Sprintf(`issuer: https://rp.example/
keys: [{id: k, file: k.pem, alg: ES256}]
nats: {url: %q}
receivers:
  - name: govuk
    endpoint: "https://rcv.example/events"
    audience: a
    key: k
    events: [caep.session-revoked]
    auth: {token_url: "${SETRELAY_TEST_UNSET_TOKEN_URL}", client_id: "${SETRELAY_TEST_UNSET_ID}", client_secret_file: /nonexistent/secret}
  - {name: partner, endpoint: "https://other.example/events", audience: b, key: k, events: [risc.account-disabled]}
`, url)
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPublishWithConfigRefusesUnknownReceiver: given the configuration,
// publish refuses an intent naming a receiver that does not exist (it
// would be stored and delivered nowhere), naming the configured receivers
// and the closest one; an intent whose type no receiver requested is
// stored with a warning.
func TestPublishWithConfigRefusesUnknownReceiver(t *testing.T) {
	url, js := startQueueForCLI(t, "govuk", "partner")
	cfg := writeRoutingConfig(t, url)

	typo := `{"id":"typo-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"},"receivers":["govk"]}`
	code, out, stderr := runCLI(t, typo, "publish", "--config", cfg)
	if code != exitUsage {
		t.Fatalf("typo'd receiver: exit %d: %s %s", code, out, stderr)
	}
	for _, want := range []string{`invalid: receivers[0]: unknown receiver "govk"`, `"govuk", "partner"`, `did you mean "govuk"?`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := intentCount(t, js); n != 0 {
		t.Fatalf("the refused intent was stored (%d intents)", n)
	}

	unrouted := `{"id":"unrouted-1","type":"risc.account-enabled","subject":{"format":"email","email":"a@example.com"}}`
	code, out, stderr = runCLI(t, unrouted, "publish", "--config", cfg)
	if code != 0 || !strings.HasPrefix(out, "stored seq=1 id=unrouted-1") {
		t.Fatalf("unrouted intent: exit %d: %s %s", code, out, stderr)
	}
	if !strings.Contains(stderr, "warning: intent unrouted-1: no configured receiver requested type https://schemas.openid.net/secevent/risc/event-type/account-enabled") {
		t.Errorf("no warning about the unrequested type:\n%s", stderr)
	}
	named := `{"id":"named-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"},"receivers":["partner"]}`
	code, _, stderr = runCLI(t, named, "publish", "--config", cfg)
	if code != 0 || !strings.Contains(stderr, `none of the receivers it names ("partner") requested type`) {
		t.Errorf("intent for a receiver that did not request its type: exit %d: %s", code, stderr)
	}
	routed := `{"id":"routed-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"},"receivers":["govuk"]}`
	code, out, stderr = runCLI(t, routed, "publish", "--config", cfg)
	if code != 0 || strings.Contains(stderr, "warning") || !strings.Contains(out, "stored") {
		t.Errorf("routed intent: exit %d: %s %s", code, out, stderr)
	}
	// Without --config there is nothing to check against: stored as before.
	code, out, _ = runCLI(t, strings.Replace(typo, "typo-1", "typo-2", 1), "publish", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "stored") {
		t.Errorf("without --config: exit %d: %s", code, out)
	}
}

// TestBackfillWithConfigRejectsUnknownReceiver: backfill --config puts an
// intent naming an unconfigured receiver in the rejects file with the same
// explanation, and stores the rest.
func TestBackfillWithConfigRejectsUnknownReceiver(t *testing.T) {
	url, js := startQueueForCLI(t, "govuk", "partner")
	cfg := writeRoutingConfig(t, url)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.ndjson")
	lines := `{"id":"b-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"},"receivers":["govuk"]}
{"id":"b-2","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"},"receivers":["partnr"]}
{"id":"b-3","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}
`
	if err := os.WriteFile(in, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCLI(t, "", "backfill", "--config", cfg, in)
	if code != exitUsage || !strings.Contains(out, "published 2") || !strings.Contains(out, "invalid 1") {
		t.Fatalf("backfill: exit %d: %s %s", code, out, stderr)
	}
	rej, err := os.ReadFile(in + ".rejects.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(rej), `"line":2`) || !strings.Contains(string(rej), `unknown receiver \"partnr\"`) || !strings.Contains(string(rej), `did you mean \"partner\"?`) {
		t.Errorf("rejects file:\n%s", rej)
	}
	if n := intentCount(t, js); n != 2 {
		t.Errorf("stream holds %d intents, want 2", n)
	}
}
