package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/push"
)

// issueExample is the configuration shape from the pipeline issue; it must
// parse as written there.
const issueExample = `
issuer: https://rp.example.gov.uk/
nats:
  url: ""                    # empty: embedded server; NATS_URL overrides
  listen: 127.0.0.1:4222     # the embedded server's client port
  store_dir: ./data
  replicas: 1
keys:
  - id: rp-2026-11
    file: ./keys/rp-2026-11.pem
    alg: RS256
worker:
  concurrency: 64
ops:
  listen: 127.0.0.1:9090     # /metrics /healthz /readyz /jwks.json
receivers:
  - name: govuk
    endpoint: https://inbound-ssf.build.account.gov.uk/...
    audience: https://inbound.ssf.account.gov.uk/
    key: rp-2026-11
    send_kid: false
    subject: in_event        # sub_id | in_event | both
    events: []               # requested types, URIs or aliases; empty = all
    auth:
      token_url: https://example.auth.eu-west-2.amazoncognito.com/oauth2/token
      client_id: ${GOVUK_CLIENT_ID}
      client_secret: ${GOVUK_CLIENT_SECRET}
      scopes: [messages/write]
    insecure_http: false
    timeout: 10s
    rate_limit: 10           # SETs per second; 0 = unlimited
    retry: {initial: 1s, max: 10m, max_attempts: 12, max_age: 72h}
`

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var testEnv = env(map[string]string{"GOVUK_CLIENT_ID": "client-123", "GOVUK_CLIENT_SECRET": "s3cret: #not-a-comment"})

func TestIssueExampleParses(t *testing.T) {
	cfg, err := Parse([]byte(issueExample), "issue.yaml", testEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	r := cfg.Receivers[0]
	if r.Auth.ClientID != "client-123" {
		t.Errorf("client_id = %q, want the expanded env value", r.Auth.ClientID)
	}
	// The secret contains YAML syntax; expanding after decoding keeps it intact.
	if r.Auth.ClientSecret.Reveal() != "s3cret: #not-a-comment" {
		t.Errorf("client_secret not expanded verbatim")
	}
	if r.KID() {
		t.Errorf("send_kid: false not honoured")
	}
	if got := []string(r.Audience); len(got) != 1 || got[0] != "https://inbound.ssf.account.gov.uk/" {
		t.Errorf("audience = %v", got)
	}
	if r.Retry.Initial != time.Second || r.Retry.Max != 10*time.Minute || r.Retry.MaxAttempts != 12 || r.Retry.MaxAge != 72*time.Hour {
		t.Errorf("retry = %+v", r.Retry)
	}
	if r.RateLimit != 10 || r.Timeout != 10*time.Second || r.Subject != PlacementInEvent {
		t.Errorf("receiver = %+v", r)
	}
	if cfg.Ops.Listen != "127.0.0.1:9090" || cfg.Worker.Concurrency != 64 || !cfg.NATS.Embedded() {
		t.Errorf("cfg = %+v", cfg)
	}
}

const minimal = `
issuer: https://issuer.example/
keys: [{id: k1, file: k1.pem, alg: ES256}]
receivers:
  - name: r1
    endpoint: https://rcv.example/events
    audience: https://rcv.example/
    key: k1
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "min.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	if cfg.NATS != want.NATS || cfg.Worker != want.Worker || cfg.Ops != want.Ops || cfg.Log != want.Log {
		t.Errorf("top-level defaults: got %+v", cfg)
	}
	if cfg.Ops.Listen != "127.0.0.1:9464" || cfg.NATS.StoreDir != "./data" || cfg.NATS.Listen != "127.0.0.1:4222" || cfg.Worker.GracePeriod != 20*time.Second {
		t.Errorf("documented defaults changed: %+v", cfg)
	}
	r := cfg.Receivers[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"send_kid", r.KID(), true},
		{"subject", r.Subject, PlacementSubID},
		{"timeout", r.Timeout, DefaultTimeout},
		{"connect_timeout", r.ConnectTimeout, DefaultConnectTimeout},
		{"retry.initial", r.Retry.Initial, DefaultRetryInitial},
		{"retry.max", r.Retry.Max, DefaultRetryMax},
		{"retry.max_attempts", r.Retry.MaxAttempts, DefaultRetryMaxAttempts},
		{"retry.max_age", r.Retry.MaxAge, DefaultRetryMaxAge},
		{"max_retry_after", r.MaxRetryAfter, push.DefaultMaxRetryAfter},
		{"pause.threshold", r.Pause.Threshold, DefaultPauseThreshold},
		{"pause.initial", r.Pause.Initial, DefaultPauseInitial},
		{"pause.max", r.Pause.Max, DefaultPauseMax},
		{"rate_limit", r.RateLimit, 0.0},
		{"auth_style (no auth)", r.Auth.AuthStyle, ""},
		{"events", r.EventTypes(), []string(nil)},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestExplicitZeroGracePeriodKept(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"worker: {grace_period: 0s}\n"), "x.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Worker.GracePeriod != 0 {
		t.Errorf("grace_period = %s, want the explicit 0s", cfg.Worker.GracePeriod)
	}
}

// problemsOf returns "path: message" lines of an *Error, failing otherwise.
func problemsOf(t *testing.T, err error) []string {
	t.Helper()
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	out := make([]string, len(ce.Problems))
	for i, p := range ce.Problems {
		out[i] = p.String()
	}
	return out
}

func containsAll(t *testing.T, got []string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		found := false
		for _, g := range got {
			if strings.Contains(g, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem containing %q in:\n  %s", w, strings.Join(got, "\n  "))
		}
	}
}

func TestYAMLErrors(t *testing.T) {
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"unknown keys, all reported with lines", minimal + "  - name: r2\n    endpont: https://x/\n    audiance: a\n", []string{`line 10: unknown key "endpont"`, `did you mean "endpoint"?`, `line 11: unknown key "audiance"`, `did you mean "audience"?`}},
		{"unknown key in a nested section", minimal + "    retry: {max_atempts: 3}\n", []string{`unknown key "max_atempts"`, `did you mean "max_attempts"?`}},
		{"unknown key far from any", minimal + "    colour: blue\n", []string{`unknown key "colour" (check its spelling`}},
		{"unknown top-level key", "isuser: x\n" + minimal, []string{`line 1: unknown key "isuser"; did you mean "issuer"?`}},
		{"bad duration", minimal + "    timeout: 10 seconds\n", []string{"line 9: `10 seconds` is not a duration: write one such as"}},
		{"audience mapping", strings.Replace(minimal, "audience: https://rcv.example/", "audience: {a: b}", 1), []string{"audience must be a string or a list of strings"}},
		{"audience nested list", strings.Replace(minimal, "audience: https://rcv.example/", "audience: [[a]]", 1), []string{"audience entries must be strings"}},
		{"syntax", "issuer: [unclosed\n", []string{"line"}},
		{"empty", "", []string{"empty"}},
		{"two documents", minimal + "---\nissuer: x\n", []string{"more than one YAML document"}},
		{"duplicate key", minimal + "issuer: https://again/\n", []string{"already defined"}},
		{"wrong type", strings.Replace(minimal, "receivers:", "worker: {concurrency: many}\nreceivers:", 1), []string{"`many` is not a whole number"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "bad.yaml", env(nil))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			containsAll(t, problemsOf(t, err), c.want...)
			if strings.Contains(err.Error(), "config.") {
				t.Errorf("error leaks Go type names: %v", err)
			}
		})
	}
}

func TestEnvExpansion(t *testing.T) {
	cases := []struct {
		name, value string
		env         map[string]string
		want        string
		problem     string
	}{
		{"plain", "https://${HOST}/events", map[string]string{"HOST": "rcv.example"}, "https://rcv.example/events", ""},
		{"two vars", "https://${HOST}:${PORT}/", map[string]string{"HOST": "h", "PORT": "8443"}, "https://h:8443/", ""},
		{"bare dollar kept", "https://rcv.example/$x", nil, "https://rcv.example/$x", ""},
		{"escaped", "https://rcv.example/$${X}", nil, "https://rcv.example/${X}", ""},
		{"missing", "https://${NOPE}/", nil, "", "receivers[0].endpoint: environment variable NOPE is not set"},
		{"unterminated", "https://${HOST/", nil, "", "unterminated"},
		{"bad name", "https://${1X}/", nil, "", `invalid environment variable name "1X"`},
		// "$NAME" without braces is kept literally, except where it can
		// only have meant the variable: NAME is set, or it is the whole
		// value. Those are refused with the braced spelling.
		{"bare set variable", "https://$HOST/events", map[string]string{"HOST": "rcv.example"}, "", "receivers[0].endpoint: $HOST is not expanded (only ${NAME} is, so that secrets may contain $): write ${HOST}"},
		{"bare whole value", "$RECEIVER_URL", nil, "", "write ${RECEIVER_URL} for the environment variable"},
		{"bare unset dollar kept", "https://rcv.example/pa$word", nil, "https://rcv.example/pa$word", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			y := strings.Replace(minimal, "https://rcv.example/events", `"`+c.value+`"`, 1)
			cfg, err := Parse([]byte(y), "env.yaml", env(c.env))
			if c.problem != "" {
				if err == nil {
					t.Fatalf("Parse succeeded, want %q", c.problem)
				}
				containsAll(t, problemsOf(t, err), c.problem)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Receivers[0].Endpoint; got != c.want {
				t.Errorf("endpoint = %q, want %q", got, c.want)
			}
		})
	}
}

func TestEnvMissingNamesEveryVariableButNoValue(t *testing.T) {
	y := strings.Replace(issueExample, "https://rp.example.gov.uk/", "${ISSUER}", 1)
	_, err := Parse([]byte(y), "x.yaml", env(map[string]string{"GOVUK_CLIENT_SECRET": "topsecret"}))
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	containsAll(t, problemsOf(t, err),
		"issuer: environment variable ISSUER is not set",
		"receivers[0].auth.client_id: environment variable GOVUK_CLIENT_ID is not set")
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error echoes a secret: %v", err)
	}
}

func TestNATSURLOverride(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "x.yaml", env(map[string]string{"NATS_URL": "nats://10.0.0.1:4222"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NATS.URL != "nats://10.0.0.1:4222" || cfg.NATS.Embedded() {
		t.Errorf("NATS_URL did not override: %q", cfg.NATS.URL)
	}
}

func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	header := filepath.Join(dir, "header")
	empty := filepath.Join(dir, "empty")
	mustWrite(t, secret, "file-secret\n")
	mustWrite(t, header, "Bearer static-token\r\n")
	mustWrite(t, empty, "\n")
	oauth := func(extra string) string {
		return minimal + "    auth:\n      token_url: https://rcv.example/token\n      client_id: c\n" + extra
	}

	cfg, err := Parse([]byte(oauth("      client_secret_file: ${DIR}/secret\n")), "x.yaml", env(map[string]string{"DIR": dir}))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Receivers[0].Auth.ClientSecret.Reveal(); got != "file-secret" {
		t.Errorf("client secret from file = %q, want the trimmed content", got)
	}
	if cfg.Receivers[0].Auth.AuthStyle != AuthStyleBasic {
		t.Errorf("auth_style default = %q", cfg.Receivers[0].Auth.AuthStyle)
	}

	cfg, err = Parse([]byte(minimal+"    auth: {authorization_header_file: "+header+"}\n"), "x.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Receivers[0].Auth.AuthorizationHeader.Reveal(); got != "Bearer static-token" {
		t.Errorf("authorization header from file = %q", got)
	}

	for name, c := range map[string]struct{ yaml, want string }{
		"missing file": {oauth("      client_secret_file: " + filepath.Join(dir, "nope") + "\n"), "receivers[0].auth.client_secret_file: open"},
		"empty file":   {oauth("      client_secret_file: " + empty + "\n"), "is empty"},
		"a directory":  {oauth("      client_secret_file: " + dir + "\n"), "client_secret_file: " + dir + " is a directory, not a file"},
		"both":         {oauth("      client_secret: x\n      client_secret_file: " + secret + "\n"), "either client_secret or client_secret_file"},
		"both header":  {minimal + "    auth: {authorization_header: x, authorization_header_file: " + header + "}\n", "either authorization_header or authorization_header_file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "x.yaml", env(nil))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			containsAll(t, problemsOf(t, err), c.want)
			if strings.Contains(err.Error(), "file-secret") || strings.Contains(err.Error(), "static-token") {
				t.Errorf("error echoes a secret: %v", err)
			}
		})
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSecretsRedacted(t *testing.T) {
	y := issueExample + "    tls: {}\n" + "  - name: static\n    endpoint: https://s.example/\n    audience: s\n    key: rp-2026-11\n    auth: {authorization_header: Bearer hdr-value}\n"
	y = strings.Replace(y, "  replicas: 1\n", "  replicas: 1\n  token: nats-token-value\n", 1)
	cfg, err := Parse([]byte(y), "x.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	renders := map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"%s":   fmt.Sprintf("%s", cfg.Receivers[0].Auth.ClientSecret),
		"%q":   fmt.Sprintf("%q", cfg.Receivers[0].Auth.ClientSecret),
		"%x":   fmt.Sprintf("%x", cfg.Receivers[0].Auth.ClientSecret),
		"json": string(js),
	}
	for verb, out := range renders {
		for _, secret := range []string{"s3cret", "hdr-value", "nats-token-value", "73336372"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s rendering leaks %q: %s", verb, secret, out)
			}
		}
		if !strings.Contains(out, "[REDACTED]") {
			t.Errorf("%s rendering shows no redaction marker: %s", verb, out)
		}
	}
	if !strings.Contains(string(js), `"client_id":"client-123"`) {
		t.Errorf("non-secret fields must still print: %s", js)
	}
	if Secret("").String() != "" {
		t.Errorf("an empty secret should print empty, to show it is unset")
	}
}

func TestYAMLShapeErrors(t *testing.T) {
	cases := map[string]struct{ yaml, want string }{
		"receivers as mapping": {"issuer: x\nreceivers: {name: a}\n", "expected a list here, found a map"},
		"nats as string":       {"nats: nats://x\n", "expected a mapping (key: value lines) here, found a str"},
		"send_kid not bool":    {strings.Replace(minimal, "key: k1", "key: k1\n    send_kid: maybe", 1), "`maybe` is not true or false"},
		"rate not number":      {strings.Replace(minimal, "key: k1", "key: k1\n    rate_limit: fast", 1), "`fast` is not a number"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "x.yaml", env(nil))
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			containsAll(t, problemsOf(t, err), c.want)
		})
	}
}

// TestConfigInCode builds a Config the way the demo does, without YAML.
func TestConfigInCode(t *testing.T) {
	cfg := Defaults()
	cfg.Issuer = "https://demo.example/"
	cfg.Keys = []Key{{ID: "demo", File: "demo.pem", Alg: "ES256"}}
	cfg.Receivers = []Receiver{{Name: "demo", Endpoint: "http://127.0.0.1:1/events", Audience: Audience{"aud"}, Key: "demo", InsecureHTTP: true}}
	if err := cfg.Validate(); err == nil {
		t.Fatal("Validate accepted receivers without their defaults (timeouts of 0)")
	}
	cfg.FillDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Defaults + FillDefaults: %v", err)
	}
	if !cfg.Receivers[0].KID() || cfg.Receivers[0].Retry.MaxAttempts != DefaultRetryMaxAttempts {
		t.Errorf("receiver defaults not filled: %+v", cfg.Receivers[0])
	}
}

// A receiver that sets few attempts but no pause threshold gets a threshold
// below its attempts, so an outage pauses it before intents run out.
func TestPauseThresholdDefaultsBelowMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		attempts, want int
	}{{12, DefaultPauseThreshold}, {4, 3}, {2, 1}, {1, 1}} {
		y := minimal + fmt.Sprintf("    retry: {max_attempts: %d}\n", tc.attempts)
		cfg, err := Parse([]byte(y), "min.yaml", env(nil))
		if tc.attempts == 1 {
			// One attempt leaves no room for a pause before the dead
			// letter: the threshold cannot be below it, and Validate says so.
			if err == nil || !strings.Contains(err.Error(), "pause.threshold: must be below retry.max_attempts") {
				t.Errorf("max_attempts 1: error %v, want the pause threshold problem", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("max_attempts %d: %v", tc.attempts, err)
		}
		if got := cfg.Receivers[0].Pause.Threshold; got != tc.want {
			t.Errorf("max_attempts %d: pause threshold %d, want %d", tc.attempts, got, tc.want)
		}
	}
}

// TestUnknownKeyDoesNotHideOtherProblems: the README promises every problem
// of the file in one run. An unknown key (or a mistyped value) is reported
// together with the validation problems of the rest of the file, not alone.
func TestUnknownKeyDoesNotHideOtherProblems(t *testing.T) {
	y := strings.Replace(minimal, "issuer: https://issuer.example/", "issuer: not-a-url\nlog: {levle: debug}", 1)
	y = strings.Replace(y, "    key: k1\n", "    key: k1\n    endpont: https://x/\n    timeout: soon\n", 1)
	y += "worker: {concurrency: 0}\n"
	_, err := Parse([]byte(y), "many.yaml", env(nil))
	if err == nil {
		t.Fatal("Parse accepted a broken file")
	}
	got := problemsOf(t, err)
	containsAll(t, got,
		`unknown key "levle"`,
		`unknown key "endpont"`,
		"`soon` is not a duration",
		"issuer: must be an absolute URL",
		"worker.concurrency: must be at least 1")
	var ce *Error
	if !errors.As(err, &ce) || len(ce.Problems) != 5 {
		t.Errorf("want exactly 5 problems, got:\n%s", err)
	}
}

// TestQueueOnlyNeedsNoReceiverCredentials: a producer loads the relay's
// file with QueueOnly and is given none of the receivers' credentials, in
// its environment or as files; everything else is still expanded and
// checked, and the same file without QueueOnly still requires them.
func TestQueueOnlyNeedsNoReceiverCredentials(t *testing.T) {
	y := strings.Replace(issueExample, "client_secret: ${GOVUK_CLIENT_SECRET}", "client_secret_file: /nonexistent/secret", 1)
	y = strings.Replace(y, "https://example.auth.eu-west-2.amazoncognito.com/oauth2/token", "${GOVUK_TOKEN_URL}", 1)
	y = strings.Replace(y, "store_dir: ./data", "store_dir: ${DATA}", 1)
	producerEnv := env(map[string]string{"DATA": "/var/lib/setrelay"})

	cfg, err := Parse([]byte(y), "x.yaml", producerEnv, QueueOnly())
	if err != nil {
		t.Fatalf("QueueOnly: %v", err)
	}
	if cfg.NATS.StoreDir != "/var/lib/setrelay" {
		t.Errorf("nats.store_dir = %q: variables outside receivers' auth must still expand", cfg.NATS.StoreDir)
	}
	if got := cfg.ReceiverNames(); len(got) != 1 || got[0] != "govuk" {
		t.Errorf("receiver names = %v", got)
	}
	if !cfg.CredentialsUnread() {
		t.Error("a QueueOnly configuration does not say its credentials are placeholders")
	}
	if full, err := Parse([]byte(issueExample), "x.yaml", testEnv); err != nil || full.CredentialsUnread() {
		t.Errorf("a fully loaded configuration: err %v, CredentialsUnread %v", err, full != nil && full.CredentialsUnread())
	}

	_, err = Parse([]byte(y), "x.yaml", producerEnv)
	if err == nil {
		t.Fatal("without QueueOnly, the missing credentials were not reported")
	}
	containsAll(t, problemsOf(t, err),
		"receivers[0].auth.client_id: environment variable GOVUK_CLIENT_ID is not set",
		"receivers[0].auth.token_url: environment variable GOVUK_TOKEN_URL is not set")

	// Mistakes outside the credentials are still mistakes.
	bad := strings.Replace(y, "concurrency: 64", "concurrency: 0", 1)
	if _, err := Parse([]byte(bad), "x.yaml", producerEnv, QueueOnly()); err == nil {
		t.Error("QueueOnly accepted worker.concurrency: 0")
	}
	if _, err := Parse([]byte(y), "x.yaml", env(nil), QueueOnly()); err == nil {
		t.Error("QueueOnly accepted an unset ${DATA} outside the receivers' credentials")
	}
}

// TestLoadDirectory: --config pointing at a directory (a mounted config
// folder, a path missing its file name) says so once, plainly, instead of
// the doubled "read X: read X: is a directory".
func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(dir)
	if err == nil {
		t.Fatal("Load of a directory succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, dir+" is a directory, not a file") || strings.Count(msg, "read "+dir) > 0 {
		t.Errorf("Load(%s) = %q, want one plain 'is a directory, not a file'", dir, msg)
	}
}

// TestQueueOnlyNeedsNoReceiverEndpoint: configs/govuk.yaml writes the
// receiver's endpoint as ${GOVUK_SSF_ENDPOINT}, set in the relay's service
// environment. 'setrelay status', 'dlq' and 'publish' with that file never
// push, yet refused to load it in an operator's shell without the variable.
// QueueOnly leaves an endpoint's ${NAME} as written, like the credentials;
// an endpoint written out is still checked.
func TestQueueOnlyNeedsNoReceiverEndpoint(t *testing.T) {
	y := strings.Replace(issueExample, "https://inbound-ssf.build.account.gov.uk/...", "${GOVUK_SSF_ENDPOINT}", 1)
	cfg, err := Parse([]byte(y), "x.yaml", env(nil), QueueOnly())
	if err != nil {
		t.Fatalf("QueueOnly with the endpoint's variable unset: %v", err)
	}
	if got := cfg.ReceiverNames(); len(got) != 1 || got[0] != "govuk" {
		t.Errorf("receiver names = %v", got)
	}
	if _, err := Parse([]byte(y), "x.yaml", env(nil)); err == nil || !strings.Contains(err.Error(), "GOVUK_SSF_ENDPOINT is not set") {
		t.Errorf("without QueueOnly the unset endpoint variable must be reported: %v", err)
	}
	bad := strings.Replace(issueExample, "https://inbound-ssf.build.account.gov.uk/...", "ftp://rcv.example/", 1)
	if _, err := Parse([]byte(bad), "x.yaml", env(nil), QueueOnly()); err == nil || !strings.Contains(err.Error(), "receivers[0].endpoint") {
		t.Errorf("QueueOnly accepted a written-out bad endpoint: %v", err)
	}
}
