package suggest

import (
	"strings"
	"testing"
)

func TestClosest(t *testing.T) {
	keys := []string{"endpoint", "audience", "issuer", "max_attempts", "url", "tls"}
	aliases := []string{"caep.session-revoked", "risc.account-disabled", "risc.account-enabled", "ssf.verification"}
	tests := []struct {
		name       string
		word       string
		candidates []string
		want       string
		ok         bool
	}{
		{"one letter missing", "endpont", keys, "endpoint", true},
		{"one letter wrong", "audiance", keys, "audience", true},
		{"transposed letters cost two edits", "isuser", keys, "issuer", true},
		{"nested key", "max_atempts", keys, "max_attempts", true},
		{"long alias allows three edits", "risc.acount-disabld", aliases, "risc.account-disabled", true},
		{"nearest wins over a farther match", "risc.account-enabld", aliases, "risc.account-enabled", true},
		{"short word allows one edit", "urk", keys, "url", true},
		{"short word refuses two edits", "uzk", keys, "", false},
		{"unrelated word", "colour", keys, "", false},
		{"four edits are too many even for a long word", "risc.acct-disabl", aliases, "", false},
		{"exact match", "tls", keys, "tls", true},
		{"empty word", "", keys, "", false},
		{"no candidates", "endpont", nil, "", false},
		{"runes, not bytes", "audiénce", keys, "audience", true},
		{"too long to compare", strings.Repeat("a", maxLen+1), []string{strings.Repeat("a", maxLen)}, "", false},
		{"tie goes to the earlier candidate", "ab", []string{"aa", "bb"}, "aa", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Closest(tt.word, tt.candidates)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Closest(%q) = %q, %v; want %q, %v", tt.word, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"", "abc", 3}, {"abc", "", 3}, {"kitten", "sitting", 3}, {"flaw", "lawn", 2}, {"same", "same", 0},
	}
	for _, tt := range tests {
		if got := distance([]rune(tt.a), []rune(tt.b)); got != tt.want {
			t.Errorf("distance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}
