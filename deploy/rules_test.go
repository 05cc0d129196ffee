package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestAlertRulesFire runs promtool's rule unit tests (testdata/
// alerts_test.yaml) against prometheus/alerts.yaml: each alert fires for
// the series it is about, after its for duration, and stays quiet where
// another alert is the right one (a blocked receiver's consumer is paused
// too, but only SetrelayReceiverBlocked fires). promtool compares
// annotations word for word, so the rules are run without them; their
// presence is TestQueriesNameExportedMetrics's to check.
func TestAlertRulesFire(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no promtool on PATH; .ci/run installs Debian's prometheus package")
		}
		t.Skip("no promtool on PATH (apt-get install prometheus, or run bash .ci/run)")
	}
	data, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rules map[string]any
	if err := yaml.Unmarshal(data, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range rules["groups"].([]any) {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			delete(r.(map[string]any), "annotations")
			alerts++
		}
	}
	bare, err := yaml.Marshal(rules)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rulesFile, bare, 0o644); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile("testdata/alerts_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tests), "rule_files: [RULES]") {
		t.Fatal("testdata/alerts_test.yaml must load rule_files: [RULES]")
	}
	testFile := filepath.Join(dir, "alerts_test.yaml")
	if err := os.WriteFile(testFile, []byte(strings.Replace(string(tests), "[RULES]", "["+rulesFile+"]", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", testFile).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	t.Logf("%d rules:\n%s", alerts, out)
}
