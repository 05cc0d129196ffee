package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/ssf"
)

func TestSSFSectionValidation(t *testing.T) {
	good := ssf.HashToken("t")
	for _, tc := range []struct {
		name string
		edit func(c *Config)
		path string // "" = valid
	}{
		{"enabled with a client and no receivers", func(c *Config) { c.Receivers = nil }, ""},
		{"disabled needs a receiver", func(c *Config) { c.Receivers = nil; c.SSF.Enabled = false }, "receivers"},
		{"no clients", func(c *Config) { c.SSF.Clients = nil }, "ssf.clients"},
		{"token in clear", func(c *Config) { c.SSF.Clients[0].TokenSHA256 = "secret-token" }, "ssf.clients[0].token_sha256"},
		{"no audience", func(c *Config) { c.SSF.Clients[0].Audience = nil }, "ssf.clients[0].audience"},
		{"duplicate client", func(c *Config) { c.SSF.Clients = append(c.SSF.Clients, c.SSF.Clients[0]) }, "ssf.clients[1].id"},
		{"bad scope", func(c *Config) { c.SSF.Clients[0].Scopes = []string{"admin"} }, "ssf.clients[0].scopes[0]"},
		{"bad default subjects", func(c *Config) { c.SSF.DefaultSubjects = "SOME" }, "ssf.default_subjects"},
		{"critical members", func(c *Config) { c.SSF.CriticalSubjectMembers = []string{"tenant", "user"} }, ""},
		{"critical member twice", func(c *Config) { c.SSF.CriticalSubjectMembers = []string{"user", "user"} }, "ssf.critical_subject_members[1]"},
		{"critical member format", func(c *Config) { c.SSF.CriticalSubjectMembers = []string{"format"} }, "ssf.critical_subject_members[0]"},
		{"http base url", func(c *Config) { c.SSF.BaseURL = "http://tx.example" }, "ssf.base_url"},
		{"unknown key", func(c *Config) { c.SSF.Key = "nope" }, "ssf.key"},
		{"tls half", func(c *Config) { c.SSF.TLS.Cert = "c.pem" }, "ssf.tls"},
		{"bad listen", func(c *Config) { c.SSF.Listen = "8443" }, "ssf.listen"},
		{"unknown event type", func(c *Config) { c.SSF.EventsSupported = []string{"caep.nope"} }, "ssf.events_supported[0]"},
		{"receiver named like a stream", func(c *Config) { c.Receivers[0].Name = "ssf-0123456789abcdef0123456789abcdef" }, "receivers[0].name"},
		{"jwt without issuer", func(c *Config) { c.SSF.JWT = &SSFJWT{JWKSURI: "https://as.example/jwks", Audience: "x"} }, "ssf.jwt.issuer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			c.SSF = SSF{Enabled: true, Clients: []SSFClient{{ID: "a", TokenSHA256: good, Audience: Audience{"https://a.example/"}}}}
			c.FillDefaults()
			tc.edit(c)
			err := c.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want a problem at %s, got %v", tc.path, err)
			}
			for _, p := range ce.Problems {
				if p.Path == tc.path {
					return
				}
			}
			t.Fatalf("no problem at %s in %v", tc.path, err)
		})
	}
	// Off by default: a configuration without the section has no listener.
	if c := validConfig(t); c.SSF.Enabled || !strings.HasPrefix(c.SSF.Listen, "0.0.0.0:") {
		t.Fatalf("ssf defaults: %+v", c.SSF)
	}
}
