package config

import "testing"

// TestKeySourceConfig: pkcs11 and kms keys parse from YAML, and every
// incomplete or ambiguous key source is reported with its path.
func TestKeySourceConfig(t *testing.T) {
	y := `issuer: https://issuer.example/
keys:
  - {id: hsm, pkcs11: {module: /usr/lib/softhsm/libsofthsm2.so, token_label: setrelay, key_label: k, key_id: 0a1b, pin_env: PIN}}
  - {id: kms, alg: RS256, max_sign_rate: 50, kms: {provider: aws, key_id: alias/setrelay, region: eu-west-2, endpoint: "http://127.0.0.1:4599"}}
receivers:
  - {name: r, endpoint: https://rcv.example/events, audience: a, key: kms}
`
	cfg, err := Parse([]byte(y), "k.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Keys[0].Source() != "pkcs11" || cfg.Keys[0].PKCS11.KeyID != "0a1b" || cfg.Keys[1].Source() != "kms" || cfg.Keys[1].MaxSignRate != 50 {
		t.Errorf("keys = %+v %+v", cfg.Keys[0].PKCS11, cfg.Keys[1].KMS)
	}

	slot := 0
	cases := []struct {
		name string
		key  Key
		want []string
	}{
		{"two sources", Key{ID: "x", Alg: "RS256", File: "k.pem", KMS: &KMSKey{Provider: "aws", KeyID: "k"}}, []string{"keys[0]: give exactly one of file, pkcs11 and kms"}},
		{"pkcs11 empty", Key{ID: "x", PKCS11: &PKCS11Key{}}, []string{"keys[0].pkcs11.module: required", "give exactly one of token_label and slot", "give key_label and/or key_id", "give exactly one of pin_file and pin_env; the PIN is never written"}},
		{"pkcs11 both tokens", Key{ID: "x", PKCS11: &PKCS11Key{Module: "m", TokenLabel: "t", Slot: &slot, KeyLabel: "k", PinEnv: "P"}}, []string{"give exactly one of token_label and slot"}},
		{"pkcs11 bad id", Key{ID: "x", PKCS11: &PKCS11Key{Module: "m", TokenLabel: "t", KeyID: "xyz", PinEnv: "P"}}, []string{"keys[0].pkcs11.key_id: must be the CKA_ID in hex"}},
		{"pkcs11 both pins", Key{ID: "x", PKCS11: &PKCS11Key{Module: "m", TokenLabel: "t", KeyLabel: "k", PinEnv: "P", PinFile: "f"}}, []string{"give exactly one of pin_file and pin_env"}},
		{"kms provider", Key{ID: "x", KMS: &KMSKey{Provider: "gcp", KeyID: "k"}}, []string{`keys[0].kms.provider: must be one of aws (got "gcp")`}},
		{"kms key id", Key{ID: "x", KMS: &KMSKey{Provider: "aws"}}, []string{"keys[0].kms.key_id: required"}},
		{"kms endpoint", Key{ID: "x", KMS: &KMSKey{Provider: "aws", KeyID: "k", Endpoint: "kms.local"}}, []string{"keys[0].kms.endpoint: must be an http(s) URL"}},
		// Over plain HTTP anyone on the path could answer GetPublicKey
		// with their own key, which /jwks.json would then publish, and
		// read the session token; only an emulator on this host may.
		{"kms endpoint plain http", Key{ID: "x", KMS: &KMSKey{Provider: "aws", KeyID: "k", Endpoint: "http://kms.internal:4599"}}, []string{"keys[0].kms.endpoint: plain http:// is only for an emulator on this host"}},
		{"kms alg hmac", Key{ID: "x", Alg: "HS256", KMS: &KMSKey{Provider: "aws", KeyID: "k"}}, []string{"keys[0].alg: must be one of"}},
		{"negative rate", Key{ID: "x", Alg: "RS256", File: "k.pem", MaxSignRate: -1}, []string{"keys[0].max_sign_rate: must be 0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := validConfig(t)
			c.key.ID = cfg.Keys[0].ID
			cfg.Keys[0] = c.key
			containsAll(t, problemsOf(t, cfg.Validate()), c.want...)
		})
	}
	// An emulator on this host (local-kms in tests) may be plain HTTP.
	for _, ep := range []string{"http://127.0.0.1:4599", "http://localhost:4599", "http://[::1]:4599", "https://kms.internal"} {
		cfg := validConfig(t)
		cfg.Keys[0] = Key{ID: cfg.Keys[0].ID, Alg: "RS256", KMS: &KMSKey{Provider: "aws", KeyID: "k", Endpoint: ep}}
		if err := cfg.Validate(); err != nil {
			t.Errorf("endpoint %s: %v", ep, err)
		}
	}
}
