package queue

import (
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
