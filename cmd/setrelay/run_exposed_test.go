package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunRefusesExposedEmbeddedNATS checks issue 11's rule at the command
// line: `setrelay run` with the embedded server on a non-loopback address
// and no authentication or TLS exits 2 and names the settings to change.
func TestRunRefusesExposedEmbeddedNATS(t *testing.T) {
	key := generate(t, "ES256", "k1")
	dir := t.TempDir()
	accounts, err := filepath.Abs("../../configs/nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	// The shipped accounts give authentication but no TLS.
	for _, u := range []string{"RELAY", "OPERATOR", "PRODUCER"} {
		t.Setenv("SETRELAY_NATS_"+u+"_PASSWORD", "pw-"+u)
	}
	for _, tc := range []struct {
		name, nats string
		want       []string
	}{
		{"no auth, no TLS", `{listen: "0.0.0.0:-1", store_dir: ` + filepath.Join(dir, "js1") + `}`,
			[]string{"nats.listen: 0.0.0.0:-1 is not a loopback address", "nats.server_config", "nats.user", "nats.password", "TLS", "tls { cert_file, key_file }"}},
		{"auth, no TLS", `{listen: "0.0.0.0:-1", store_dir: ` + filepath.Join(dir, "js2") + `, server_config: ` + accounts + `, user: relay, password: pw-RELAY}`,
			[]string{"nats.listen: 0.0.0.0:-1 is not a loopback address", "TLS: add a tls"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.yaml")
			y := fmt.Sprintf(`issuer: https://rp.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: %s
ops: {listen: "127.0.0.1:0"}
receivers:
  - {name: r, endpoint: "https://rcv.example/events", audience: https://rcv.example/, key: k1}
`, key, tc.nats)
			if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(t, "", "run", "--config", path)
			if code != exitUsage {
				t.Fatalf("exit %d, want 2:\n%s", code, stderr)
			}
			for _, w := range append(tc.want, "invalid configuration in "+path) {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}
