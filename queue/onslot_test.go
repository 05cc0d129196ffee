package queue

import (
	"hash/fnv"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/intent"
)

func TestOnItsSlot(t *testing.T) {
	subj := map[string]any{"format": "email", "email": "alice@example.com"}
	key := string(intent.SubjectKey(subj))
	right := IntentSubjectFor(subj)
	other := SlotSubject((SubjectSlot(subj) + 1) % Slots)
	for _, tc := range []struct {
		subject string
		want    bool
	}{
		{right, true},
		{other, false},
		{IntentSubject + ".x.y", false},
		{IntentSubject, true},
		{IntentSubject + ".5", true},
		{slotReplaySubject("r", SubjectSlot(subj)), true},
	} {
		if got := OnItsSlot(tc.subject, key); got != tc.want {
			t.Errorf("OnItsSlot(%q) = %v, want %v", tc.subject, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { OnItsSlot(right, key) }); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// TestKeySlotIsFNV1a holds the hand-written hash to hash/fnv's FNV-1a: the
// slot layout producers and ordered workers share depends on it.
func TestKeySlotIsFNV1a(t *testing.T) {
	for _, key := range []string{"", "a", `{"email":"alice@example.com","format":"email"}`, strings.Repeat("x", 300)} {
		h := fnv.New32a()
		h.Write([]byte(key))
		want := int(h.Sum32() % Slots)
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
		if got := keySlot([]byte(key)); got != want {
			t.Errorf("keySlot([]byte(%q)) = %d, want %d", key, got, want)
		}
	}
}
