package config

import (
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

// validConfig returns a complete, valid configuration with two keys and an
// OAuth receiver, for the rule table to break one rule at a time.
func validConfig(t *testing.T) *Config {
	t.Helper()
	y := minimal + `    auth:
      token_url: https://rcv.example/token
      client_id: c
      client_secret: s
      scopes: [messages/write]
    events: [risc.account-disabled, caep.session-revoked]
  - name: r2
    endpoint: https://other.example/events
    audience: [a, b]
    audience_as_array: true
    key: k1
`
	cfg, err := Parse([]byte(y), "valid.yaml", env(nil))
	if err != nil {
		t.Fatalf("base config invalid: %v", err)
	}
	return cfg
}

func TestValidConfigHasNoProblems(t *testing.T) {
	if err := validConfig(t).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidationRules(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(c *Config)
		want   []string // "path: message fragment"
	}{
		{"issuer missing", func(c *Config) { c.Issuer = "" }, []string{"issuer: required"}},
		{"issuer relative", func(c *Config) { c.Issuer = "rp.example" }, []string{"issuer: must be an absolute URL"}},
		{"no keys", func(c *Config) { c.Keys = nil; c.Receivers = c.Receivers[:0] }, []string{"keys: at least one signing key", "setrelay keys generate", "receivers: at least one receiver"}},
		{"key id missing", func(c *Config) { c.Keys[0].ID = "" }, []string{"keys[0].id: required", "receivers[0].key: no key with id \"k1\""}},
		{"key id duplicate", func(c *Config) { c.Keys = append(c.Keys, c.Keys[0]) }, []string{"keys[1].id: duplicate key id \"k1\""}},
		{"key file missing", func(c *Config) { c.Keys[0].File = "" }, []string{"keys[0].file: required"}},
		{"key alg none", func(c *Config) { c.Keys[0].Alg = "none" }, []string{"keys[0].alg: must be one of RS256, PS256, ES256, ES384, EdDSA (got \"none\")"}},
		{"key alg hmac", func(c *Config) { c.Keys[0].Alg = "HS256" }, []string{"keys[0].alg: must be one of"}},
		{"nats url scheme", func(c *Config) { c.NATS.URL = "http://x:4222" }, []string{"nats.url: must be nats://"}},
		{"nats url list one bad", func(c *Config) { c.NATS.URL = "nats://a:4222,b:4222"; c.NATS.Replicas = 3 }, []string{"nats.url: must be nats://", `(got "b:4222")`}},
		{"embedded replicas", func(c *Config) { c.NATS.Replicas = 3 }, []string{"nats.replicas: the embedded server is a single node"}},
		{"replicas range", func(c *Config) { c.NATS.URL = "nats://a:4222"; c.NATS.Replicas = 7 }, []string{"nats.replicas: must be between 1 and 5"}},
		{"listen", func(c *Config) { c.NATS.Listen = "4222" }, []string{"nats.listen: must be host:port"}},
		{"listen port", func(c *Config) { c.NATS.Listen = "127.0.0.1:http" }, []string{"nats.listen: port must be a number"}},
		{"store dir", func(c *Config) { c.NATS.StoreDir = "" }, []string{"nats.store_dir: required"}},
		{"max ack pending", func(c *Config) { c.NATS.MaxAckPending = 0 }, []string{"nats.max_ack_pending: must be at least 1"}},
		{"ack wait", func(c *Config) { c.NATS.AckWait = 100 * time.Millisecond }, []string{"nats.ack_wait: must be at least 1s"}},
		{"duplicate window zero", func(c *Config) { c.NATS.DuplicateWindow = 0 }, []string{"nats.duplicate_window: must be more than 0s and at most 168h0m0s (got 0s)"}},
		{"duplicate window too long", func(c *Config) { c.NATS.DuplicateWindow = 30 * 24 * time.Hour }, []string{"nats.duplicate_window: must be more than 0s", "(got 720h0m0s)"}},
		{"two auth methods", func(c *Config) { c.NATS.Token = "t"; c.NATS.Creds = "x.creds" }, []string{"nats: set one authentication method"}},
		{"user without password", func(c *Config) { c.NATS.User = "u" }, []string{"nats.password: required with nats.user"}},
		{"password without user", func(c *Config) { c.NATS.Password = "p" }, []string{"nats.user: required with nats.password"}},
		{"nats tls cert alone", func(c *Config) { c.NATS.TLS.Cert = "c.pem" }, []string{"nats.tls: cert and key go together"}},
		{"concurrency", func(c *Config) { c.Worker.Concurrency = 0 }, []string{"worker.concurrency: must be at least 1"}},
		{"grace", func(c *Config) { c.Worker.GracePeriod = -time.Second }, []string{"worker.grace_period: must not be negative"}},
		{"fetch wait zero", func(c *Config) { c.Worker.FetchWait = 0 }, []string{"worker.fetch_wait: must be between 100ms and 30s (got 0s)"}},
		{"fetch wait long", func(c *Config) { c.Worker.FetchWait = time.Minute }, []string{"worker.fetch_wait: must be between 100ms and 30s (got 1m0s)"}},
		{"ops listen", func(c *Config) { c.Ops.Listen = "" }, []string{"ops.listen: must be host:port"}},
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, []string{"log.level: must be debug, info, warn or error"}},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, []string{"log.format: must be json or console"}},
		{"receiver name missing", func(c *Config) { c.Receivers[0].Name = "" }, []string{"receivers[0].name: required"}},
		{"receiver name chars", func(c *Config) { c.Receivers[0].Name = "gov.uk" }, []string{"receivers[0].name: use 1 to 64 letters"}},
		{"receiver name duplicate", func(c *Config) { c.Receivers[1].Name = "r1" }, []string{`receivers[1].name: duplicate receiver name "r1" (also receivers[0])`}},
		{"endpoint missing", func(c *Config) { c.Receivers[0].Endpoint = "" }, []string{"receivers[0].endpoint: required"}},
		{"endpoint relative", func(c *Config) { c.Receivers[0].Endpoint = "/events" }, []string{"receivers[0].endpoint: must be an absolute https:// URL"}},
		{"endpoint http", func(c *Config) { c.Receivers[0].Endpoint = "http://rcv.example/" }, []string{"receivers[0].endpoint: uses http://", "insecure_http: true"}},
		{"endpoint http allowed", func(c *Config) {
			c.Receivers[0].Endpoint = "http://127.0.0.1:8080/"
			c.Receivers[0].Auth.TokenURL = "http://127.0.0.1:8080/token"
			c.Receivers[0].InsecureHTTP = true
		}, nil},
		{"endpoint userinfo", func(c *Config) { c.Receivers[0].Endpoint = "https://u:p@rcv.example/" }, []string{"receivers[0].endpoint: must not carry credentials"}},
		{"audience missing", func(c *Config) { c.Receivers[0].Audience = nil }, []string{"receivers[0].audience: required"}},
		{"audience empty entry", func(c *Config) { c.Receivers[1].Audience = Audience{"a", " "} }, []string{"receivers[1].audience[1]: must not be empty"}},
		{"audiences need array", func(c *Config) { c.Receivers[1].AudienceAsArray = false }, []string{"receivers[1].audience_as_array: must be true"}},
		{"key missing", func(c *Config) { c.Receivers[0].Key = "" }, []string{"receivers[0].key: required"}},
		{"key unknown", func(c *Config) { c.Receivers[0].Key = "k9" }, []string{`receivers[0].key: no key with id "k9"`}},
		{"subject", func(c *Config) { c.Receivers[0].Subject = "top" }, []string{"receivers[0].subject: must be sub_id (SSF 1.0), in_event (RISC, GOV.UK) or both"}},
		{"event unknown alias", func(c *Config) { c.Receivers[0].Events = []string{"risc.account-disabld"} }, []string{"receivers[0].events[0]: unknown event type"}},
		{"event reserved namespace typo", func(c *Config) {
			c.Receivers[0].Events = []string{"https://schemas.openid.net/secevent/risc/event-type/acount-disabled"}
		}, []string{"receivers[0].events[0]: unknown event type"}},
		{"event private not allowed", func(c *Config) { c.Receivers[0].Events = []string{"https://example.com/my-event"} }, []string{"receivers[0].events[0]:", "allow_private_types: true"}},
		{"event private allowed", func(c *Config) {
			c.Receivers[0].Events = []string{"https://example.com/my-event"}
			c.Receivers[0].AllowPrivateTypes = true
		}, nil},
		{"event govuk vocabulary is known", func(c *Config) {
			c.Receivers[0].Events = []string{"https://vocab.account.gov.uk/secevent/v1/durableIdentifier"}
		}, nil},
		{"event duplicate via alias", func(c *Config) {
			c.Receivers[0].Events = []string{"risc.account-disabled", "https://schemas.openid.net/secevent/risc/event-type/account-disabled"}
		}, []string{"receivers[0].events[1]: duplicate of events[0]"}},
		{"auth both kinds", func(c *Config) { c.Receivers[0].Auth.AuthorizationHeader = "Bearer x" }, []string{"receivers[0].auth: set either token_url"}},
		{"auth token url missing", func(c *Config) { c.Receivers[0].Auth.TokenURL = "" }, []string{"receivers[0].auth.token_url: required"}},
		{"auth token url http", func(c *Config) { c.Receivers[0].Auth.TokenURL = "http://rcv.example/token" }, []string{"receivers[0].auth.token_url: uses http://"}},
		{"auth client id missing", func(c *Config) { c.Receivers[0].Auth.ClientID = "" }, []string{"receivers[0].auth.client_id: required with token_url"}},
		{"auth secret missing", func(c *Config) { c.Receivers[0].Auth.ClientSecret = "" }, []string{"receivers[0].auth.client_secret: required with token_url", "client_secret_file"}},
		{"auth style", func(c *Config) { c.Receivers[0].Auth.AuthStyle = "header" }, []string{"receivers[0].auth.auth_style: must be basic"}},
		{"auth scope with space", func(c *Config) { c.Receivers[0].Auth.Scopes = []string{"a b"} }, []string{"receivers[0].auth.scopes[0]: must be one scope token"}},
		// RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ).
		{"auth scope control char", func(c *Config) { c.Receivers[0].Auth.Scopes = []string{"messages/write", "a\x01b"} }, []string{"receivers[0].auth.scopes[1]: must be one scope token"}},
		{"auth scope non-ascii", func(c *Config) { c.Receivers[0].Auth.Scopes = []string{"écrire"} }, []string{"receivers[0].auth.scopes[0]: must be one scope token"}},
		{"auth scope del", func(c *Config) { c.Receivers[0].Auth.Scopes = []string{"a\x7f"} }, []string{"receivers[0].auth.scopes[0]: must be one scope token"}},
		{"scopes without oauth", func(c *Config) { c.Receivers[1].Auth.Scopes = []string{"x"} }, []string{"receivers[1].auth.scopes: scopes need token_url"}},
		{"header multi-line", func(c *Config) { c.Receivers[1].Auth.AuthorizationHeader = "Bearer x\nX-Evil: y" }, []string{"receivers[1].auth.authorization_header: must be a single line"}},
		{"timeout", func(c *Config) { c.Receivers[0].Timeout = 0 }, []string{"receivers[0].timeout: must be a positive duration"}},
		{"connect timeout", func(c *Config) { c.Receivers[0].ConnectTimeout = -1 }, []string{"receivers[0].connect_timeout: must be a positive duration"}},
		{"connect above timeout", func(c *Config) { c.Receivers[0].ConnectTimeout = time.Minute }, []string{"receivers[0].connect_timeout: must not exceed timeout"}},
		{"max retry after", func(c *Config) { c.Receivers[0].MaxRetryAfter = -1 }, []string{"receivers[0].max_retry_after: must be a positive duration"}},
		{"max conns", func(c *Config) { c.Receivers[0].MaxConns = -1 }, []string{"receivers[0].max_conns: must not be negative"}},
		{"rate limit", func(c *Config) { c.Receivers[0].RateLimit = -0.5 }, []string{"receivers[0].rate_limit: must be 0 (unlimited)", "got -0.5"}},
		{"ordering", func(c *Config) { c.Receivers[0].Ordering = "fifo" }, []string{"receivers[0].ordering: must be none (default) or subject", `got "fifo"`}},
		{"partitions", func(c *Config) { c.Receivers[0].Ordering, c.Receivers[0].Partitions = "subject", 100 }, []string{"receivers[0].partitions: partitions must be a power of two from 8 to 1024", "got 100"}},
		{"on_dead_letter", func(c *Config) { c.Receivers[0].Ordering, c.Receivers[0].OnDeadLetter = "subject", "drop" }, []string{"receivers[0].on_dead_letter: must be continue (default) or hold", `got "drop"`}},
		{"partitions without ordering", func(c *Config) { c.Receivers[0].Partitions = 64 }, []string{"receivers[0].ordering: partitions and on_dead_letter apply only with ordering: subject"}},
		{"retry initial", func(c *Config) { c.Receivers[0].Retry.Initial = -time.Second }, []string{"receivers[0].retry.initial: must be a positive duration"}},
		{"retry max below initial", func(c *Config) { c.Receivers[0].Retry.Max = time.Millisecond }, []string{"receivers[0].retry.max: must be at least retry.initial"}},
		{"retry attempts", func(c *Config) { c.Receivers[0].Retry.MaxAttempts = -1 }, []string{"receivers[0].retry.max_attempts: must be at least 1"}},
		{"retry attempts above max deliver", func(c *Config) { c.Receivers[0].Retry.MaxAttempts = queue.DefaultMaxDeliver }, []string{"receivers[0].retry.max_attempts: must be below", "max_deliveries"}},
		{"retry age", func(c *Config) { c.Receivers[0].Retry.MaxAge = -1 }, []string{"receivers[0].retry.max_age: must be a positive duration"}},
		{"pause threshold", func(c *Config) { c.Receivers[0].Pause.Threshold = -2 }, []string{"receivers[0].pause.threshold: must be at least 1"}},
		{"pause threshold not below max_attempts", func(c *Config) { c.Receivers[0].Pause.Threshold = 12; c.Receivers[0].Retry.MaxAttempts = 12 }, []string{"receivers[0].pause.threshold: must be below retry.max_attempts (12 >= 12)"}},
		{"pause initial", func(c *Config) { c.Receivers[0].Pause.Initial = -1 }, []string{"receivers[0].pause.initial: must be a positive duration"}},
		{"pause max below initial", func(c *Config) { c.Receivers[0].Pause.Max = time.Second }, []string{"receivers[0].pause.max: must be at least pause.initial"}},
		{"receiver tls", func(c *Config) { c.Receivers[1].TLS.Key = "k.pem" }, []string{"receivers[1].tls: cert and key go together"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t)
			c.mutate(cfg)
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			containsAll(t, problemsOf(t, err), c.want...)
		})
	}
}

// TestValidationReportsEverything breaks several rules across sections and
// expects them all in one error, each on its own line with its path.
func TestValidationReportsEverything(t *testing.T) {
	y := `
issuer: ""
keys: [{id: k1, file: k.pem, alg: HS256}]
worker: {concurrency: 0}
receivers:
  - name: a
    endpoint: http://x/
    audience: x
    key: k1
  - name: b
    endpoint: https://y/
    audience: y
    key: k2
    auth: {token_url: https://y/token, client_id: c}
`
	_, err := Parse([]byte(y), "many.yaml", env(nil))
	if err == nil {
		t.Fatal("Parse accepted it")
	}
	want := []string{"issuer: required", "keys[0].alg:", "worker.concurrency:", "receivers[0].endpoint: uses http://",
		`receivers[1].key: no key with id "k2"`, "receivers[1].auth.client_secret: required"}
	containsAll(t, problemsOf(t, err), want...)
	msg := err.Error()
	if !strings.HasPrefix(msg, "invalid configuration in many.yaml:\n  ") || strings.Count(msg, "\n  ") != len(problemsOf(t, err)) {
		t.Errorf("want one problem per indented line, got:\n%s", msg)
	}
}

func TestEventTypesResolved(t *testing.T) {
	cfg := validConfig(t)
	got := cfg.Receivers[0].EventTypes()
	want := []string{
		"https://schemas.openid.net/secevent/risc/event-type/account-disabled",
		"https://schemas.openid.net/secevent/caep/event-type/session-revoked",
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("EventTypes = %v, want %v", got, want)
	}
}

func TestURLProblemsDoNotEchoCredentials(t *testing.T) {
	cfg := validConfig(t)
	cfg.NATS.URL = "http://relay:hunter2@nats:4222"
	cfg.Receivers[0].Endpoint = "ftp://user:pw-secret@rcv.example/"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad URLs")
	}
	msg := err.Error()
	if strings.Contains(msg, "hunter2") || strings.Contains(msg, "pw-secret") {
		t.Errorf("a credential in a URL was echoed:\n%s", msg)
	}
	containsAll(t, problemsOf(t, err), `(got "http://[REDACTED]@nats:4222")`, `(got "ftp://[REDACTED]@rcv.example/")`)
}

// TestCredentialInURLQueryRefused: a client_secret, password, token or
// access_token in token_url's or endpoint's query would be printed by every
// log line, proxy and error that shows the URL. Validation refuses it, says
// why and what to do instead, and does not echo the value.
func TestCredentialInURLQueryRefused(t *testing.T) {
	cfg := validConfig(t)
	cfg.Receivers[0].Auth.TokenURL = "https://rcv.example/token?client_secret=hunter2&tenant=t1"
	cfg.Receivers[0].Endpoint = "https://rcv.example/events?access_token=pw-secret"
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted credentials in URL queries")
	}
	if msg := err.Error(); strings.Contains(msg, "hunter2") || strings.Contains(msg, "pw-secret") || strings.Contains(msg, "t1") {
		t.Errorf("a query value was echoed:\n%s", msg)
	}
	containsAll(t, problemsOf(t, err),
		"receivers[0].auth.token_url: carries client_secret in its query string",
		"set client_secret (or client_secret_file)",
		"receivers[0].endpoint: carries access_token in its query string",
		"authenticate with auth")
	for _, param := range []string{"password", "token"} {
		cfg := validConfig(t)
		cfg.Receivers[0].Auth.TokenURL = "https://rcv.example/token?" + param + "=x"
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "carries "+param) {
			t.Errorf("token_url with %s: %v", param, err)
		}
	}
}
