package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExampleConfigs loads every shipped example with the environment it
// documents, so the examples cannot drift from what Load accepts.
func TestExampleConfigs(t *testing.T) {
	cases := []struct {
		file  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{"local.yaml", nil, func(t *testing.T, c *Config) {
			r := c.Receivers[0]
			if !c.NATS.Embedded() || !r.InsecureHTTP || c.Keys[0].Alg != "ES256" {
				t.Errorf("local demo: embedded NATS, insecure_http, ES256 expected: %+v", c)
			}
		}},
		{"govuk.yaml", map[string]string{
			"GOVUK_SSF_ENDPOINT":  "https://inbound-ssf.build.account.gov.uk/v1/events",
			"GOVUK_TOKEN_URL":     "https://example.auth.eu-west-2.amazoncognito.com/oauth2/token",
			"GOVUK_CLIENT_ID":     "client-id",
			"GOVUK_CLIENT_SECRET": "client-secret",
		}, func(t *testing.T, c *Config) {
			r := c.Receivers[0]
			if c.Keys[0].Alg != "RS256" || r.KID() || r.Subject != PlacementInEvent || r.Auth.AuthStyle != AuthStyleBasic ||
				len(r.Auth.Scopes) != 1 || r.Auth.Scopes[0] != "messages/write" || r.AudienceAsArray {
				t.Errorf("GOV.UK profile: RS256, no kid, subject in event, Basic auth, messages/write, string aud: %+v", r)
			}
			if r.Auth.ClientSecret.Reveal() != "client-secret" || r.Auth.ClientID != "client-id" {
				t.Errorf("credentials not taken from the environment")
			}
			types := map[string]bool{}
			for _, u := range r.EventTypes() {
				types[u] = true
			}
			if !types["https://schemas.openid.net/secevent/risc/event-type/account-disabled"] || !types["https://vocab.account.gov.uk/secevent/v1/accountPurged"] {
				t.Errorf("GOV.UK event types = %v", r.EventTypes())
			}
		}},
		{"govuk-kms.yaml", map[string]string{
			"GOVUK_SSF_ENDPOINT":  "https://inbound-ssf.build.account.gov.uk/v1/events",
			"GOVUK_TOKEN_URL":     "https://example.auth.eu-west-2.amazoncognito.com/oauth2/token",
			"GOVUK_CLIENT_ID":     "client-id",
			"GOVUK_CLIENT_SECRET": "client-secret",
		}, func(t *testing.T, c *Config) {
			k := c.Keys[0]
			if k.Source() != "kms" || k.File != "" || k.Alg != "RS256" || k.KMS.Provider != "aws" || k.KMS.KeyID != "alias/setrelay-rp-2026-11" || k.KMS.Region != "eu-west-2" || k.MaxSignRate != 200 {
				t.Errorf("GOV.UK with KMS: an RS256 AWS KMS key by alias: %+v %+v", k, k.KMS)
			}
			if r := c.Receivers[0]; r.Key != "rp-2026-11" || r.KID() || r.Subject != PlacementInEvent {
				t.Errorf("GOV.UK profile: %+v", r)
			}
		}},
		{"ssf.yaml", map[string]string{"SSF_RECEIVER_TOKEN": "tok"}, func(t *testing.T, c *Config) {
			r := c.Receivers[0]
			if c.Keys[0].Alg != "ES256" || !r.KID() || r.Subject != PlacementSubID || c.NATS.Replicas != 3 || c.NATS.Embedded() {
				t.Errorf("SSF profile: ES256, kid, sub_id, clustered NATS: %+v", c)
			}
			if r.Auth.AuthorizationHeader.Reveal() != "Bearer tok" || r.Auth.OAuth() {
				t.Errorf("static authorization header expected")
			}
			if !c.SSF.Enabled || len(c.SSF.Clients) != 1 || c.Transmitter().Clients[0].Audience[0] != "https://acme.example/" || c.Transmitter().KeyID != "ssf-2026-11" {
				t.Errorf("SSF API section: %+v", c.SSF)
			}
		}},
		// Owned by the deployment (docker-compose.yml); validated here so
		// the compose stack's config cannot drift from the loader either.
		{"compose/setrelay.yaml", map[string]string{"RECEIVER_CLIENT_ID": "id", "RECEIVER_CLIENT_SECRET": "secret",
			"SETRELAY_NATS_USER": "relay", "SETRELAY_NATS_PASSWORD": "pw"}, func(t *testing.T, c *Config) {
			if c.NATS.Replicas != 3 {
				t.Errorf("compose: replicas = %d", c.NATS.Replicas)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			// NATS_URL from the developer's shell would change what is checked.
			t.Setenv("NATS_URL", "")
			cfg, err := Load(filepath.Join("..", "configs", c.file))
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, cfg)
		})
	}
}

// TestExampleConfigsNeedTheirEnvironment: an example that documents env
// variables must fail, naming them, when they are missing.
func TestExampleConfigsNeedTheirEnvironment(t *testing.T) {
	for _, v := range []string{"GOVUK_SSF_ENDPOINT", "GOVUK_TOKEN_URL", "GOVUK_CLIENT_ID", "GOVUK_CLIENT_SECRET"} {
		t.Setenv(v, "")
	}
	_, err := Parse(mustRead(t, "../configs/govuk.yaml"), "govuk.yaml", env(nil))
	if err == nil {
		t.Fatal("govuk.yaml loaded without its environment")
	}
	containsAll(t, problemsOf(t, err), "GOVUK_SSF_ENDPOINT is not set", "GOVUK_TOKEN_URL is not set", "GOVUK_CLIENT_ID is not set", "GOVUK_CLIENT_SECRET is not set")
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
