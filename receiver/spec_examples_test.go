package receiver

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecExamples pushes the SET examples of SSF 1.0, CAEP 1.0 and RISC
// 1.0 (testdata/spec-examples, whose README lists the few repairs made to
// the published text), each signed with jwx, to a receiver configured with
// the example's iss and aud in SSF mode. Every example is accepted; the
// SSF and CAEP ones with no warning, the RISC ones with only txn_missing,
// since RISC 1.0's examples predate SSF 1.0 §4.1.9. Each example is then
// also checked with a txn added, which must leave no warning at all.
func TestSpecExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/spec-examples/*.json")
	if err != nil || len(files) < 20 {
		t.Fatalf("examples: %v, %d files", err, len(files))
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		aud, _ := c["aud"].(string)
		if a, ok := c["aud"].([]any); ok {
			aud, _ = a[0].(string)
		}
		var wantWarnings []string
		if strings.HasPrefix(name, "risc-") {
			wantWarnings = []string{WTxnMissing}
		}
		t.Run(name, func(t *testing.T) {
			for _, withTxn := range []bool{false, true} {
				h := newHarness(t, func(cfg *Config) {
					cfg.Issuer, cfg.Audience, cfg.SubjectMode = c["iss"].(string), aud, SubjectSubID
				})
				payload := raw
				want := wantWarnings
				if withTxn {
					if _, ok := c["txn"]; ok {
						continue
					}
					payload = injectMember(t, raw, "", `"txn":"added-by-the-test"`)
					want = nil
				}
				resp, body := h.push(h.token(), h.jwxSET(payload), nil)
				if resp.StatusCode != http.StatusAccepted {
					t.Fatalf("status %d: %s", resp.StatusCode, body)
				}
				st := h.r.Stats()
				if len(st.Violations) != 0 || len(st.Warnings) != len(want) {
					t.Fatalf("violations %v, warnings %v; want warnings %v", st.Violations, st.Warnings, want)
				}
				for _, w := range want {
					if st.Warnings[w] != 1 {
						t.Fatalf("warnings %v; want %v", st.Warnings, want)
					}
				}
			}
		})
	}
}
