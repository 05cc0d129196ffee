package receiver

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// rulesTable is the README's table of rules, generated from Rules.
func rulesTable() string {
	var b strings.Builder
	b.WriteString("| Rule | On breach | Where it is stated | What it says |\n|---|---|---|---|\n")
	for _, r := range rules {
		answer := fmt.Sprintf("%d %s", r.Status, r.Err)
		if r.Err == "" {
			answer = fmt.Sprint(r.Status)
		}
		if r.Severity == Warn {
			answer = "warning (400 invalid_request with `--strict`)"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", r.Kind, answer, r.Section, strings.ReplaceAll(r.Summary, "|", "\\|"))
	}
	return b.String()
}

// TestREADMEListsEveryRule keeps the README's table of rules identical to
// the receiver's. RECEIVER_PRINT_RULES=1 prints the table to paste.
func TestREADMEListsEveryRule(t *testing.T) {
	want := rulesTable()
	if os.Getenv("RECEIVER_PRINT_RULES") != "" {
		fmt.Print(want)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), want) {
		t.Errorf("README.md lacks the current table of receiver rules; run RECEIVER_PRINT_RULES=1 go test ./receiver -run TestREADMEListsEveryRule and paste it")
	}
}
