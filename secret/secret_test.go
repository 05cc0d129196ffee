package secret

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestValueRedactsEveryRendering(t *testing.T) {
	const cred = "s3cr3t-VALUE"
	v := Value(cred)
	type holder struct {
		S   Value
		P   *Value
		Arr []Value
	}
	h := holder{S: v, P: &v, Arr: []Value{v}}
	out := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		out["value "+verb] = fmt.Sprintf(verb, v)
		out["holder "+verb] = fmt.Sprintf(verb, h)
	}
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out["json"] = string(j)
	y, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out["yaml"] = string(y)
	txt, _ := v.MarshalText()
	out["text"] = string(txt)
	for name, s := range out {
		if strings.Contains(s, cred) || strings.Contains(strings.ToLower(s), fmt.Sprintf("%x", cred)) {
			t.Errorf("%s leaks the credential: %s", name, s)
		}
		if !strings.Contains(s, Redacted) {
			t.Errorf("%s does not say it redacted: %s", name, s)
		}
	}
	if v.Reveal() != cred || !v.IsSet() {
		t.Fatal("Reveal or IsSet lost the value")
	}
	if Value("").String() != "" || Value("").IsSet() {
		t.Fatal("an empty value should print empty and not be set")
	}
}

func TestURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"https://rcv.example/events", "https://rcv.example/events"},
		{"https://rcv.example/token?client_secret=hunter2&x=1",
			"https://rcv.example/token?client_secret=[REDACTED]&x=[REDACTED]"},
		{"https://u:p@rcv.example/a?b", "https://[REDACTED]@rcv.example/a?[REDACTED]"},
		{"https://rcv.example/cb#access_token=tok", "https://rcv.example/cb#[REDACTED]"},
		{"nats://relay:pw@127.0.0.1:4222", "nats://[REDACTED]@127.0.0.1:4222"},
		{"relay:pw@127.0.0.1:4222", "[REDACTED]@127.0.0.1:4222"},
		// An '@' in the path is not user information.
		{"https://rcv.example/users/a@b", "https://rcv.example/users/a@b"},
		// A URL that does not parse is still redacted.
		{"ht tp://u:p@h/%zz?token=abc", "ht tp://[REDACTED]@h/%zz?token=[REDACTED]"},
		{"https://rcv.example/?", "https://rcv.example/?"},
	}
	for _, c := range cases {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	list := "nats://a:pw1@h1:4222,nats://b:pw2@h2:4222"
	if got, want := URLList(list), "nats://[REDACTED]@h1:4222,nats://[REDACTED]@h2:4222"; got != want {
		t.Errorf("URLList = %q, want %q", got, want)
	}
}

// TestURLNeverKeepsAQueryValue: whatever the query holds, no value of it
// survives, in any escaping url.Parse understands.
func TestURLNeverKeepsAQueryValue(t *testing.T) {
	for _, q := range []url.Values{
		{"client_secret": {"Zq9-value-1"}},
		{"a": {"Zq9-value-2"}, "b": {"Zq9-value-3"}},
		{"weird key": {"Zq9 value/4&x=y"}},
	} {
		raw := "https://rcv.example/token?" + q.Encode()
		got := URL(raw)
		if strings.Contains(got, "Zq9") {
			t.Errorf("URL(%q) = %q keeps a value", raw, got)
		}
	}
}

func TestCredentialInQuery(t *testing.T) {
	cases := map[string]string{
		"https://rcv.example/token":                       "",
		"https://rcv.example/token?audience=x":            "",
		"https://rcv.example/token?client_secret=s":       "client_secret",
		"https://rcv.example/token?Client_Secret=s":       "client_secret",
		"https://rcv.example/events?token=t":              "token",
		"https://rcv.example/events?access_token=t&a=b":   "access_token",
		"https://rcv.example/events?x=1&password=p":       "password",
		"https://rcv.example/events?tokens=not-a-match":   "",
		"https://rcv.example/token?client_secret=&grant=": "client_secret",
	}
	for raw, want := range cases {
		if got := CredentialInQuery(raw); got != want {
			t.Errorf("CredentialInQuery(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestScrubberRemovesEveryForm(t *testing.T) {
	const cred = "c2V0/cmVs+YXk6c2Vj/cmV0LXBhc3N3b3Jk=="
	const authz = "Basic " + cred
	s := NewScrubber(authz, "", "short")
	for name, text := range map[string]string{
		"as sent":      "bad header " + authz,
		"bare":         "got " + cred,
		"php slashes":  "got " + strings.ReplaceAll(cred, "/", `\/`),
		"unicode":      "got " + unicodeEscape(cred),
		"query escape": "https://x/?a=" + url.QueryEscape(authz),
		"path escape":  "https://x/" + url.PathEscape(cred),
		"other escape": "got " + strings.ReplaceAll(cred, "+", "%2b"),
	} {
		got := s.String(text)
		if strings.Contains(got, "cmV0LXBhc3N3b3Jk") || strings.Contains(got, "YXk6c2Vj") {
			t.Errorf("%s: %q still holds the credential", name, got)
		}
		if !strings.Contains(got, Redacted) {
			t.Errorf("%s: %q does not say it redacted", name, got)
		}
		if b := string(s.Bytes([]byte(text))); b != got {
			t.Errorf("%s: Bytes %q differs from String %q", name, b, got)
		}
	}
	if got := s.String("a short note"); got != "a "+Redacted+" note" {
		t.Errorf("short credential not scrubbed: %q", got)
	}
	var none *Scrubber
	if none.String("x") != "x" || string(none.Bytes([]byte("x"))) != "x" {
		t.Error("a nil Scrubber must leave text alone")
	}
}
