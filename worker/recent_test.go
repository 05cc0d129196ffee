package worker

import (
	"testing"
	"time"
)

func TestMinuteCountSlidesOverSixtySeconds(t *testing.T) {
	var m minuteCount
	t0 := time.Unix(1_800_000_000, 0)
	for i := range 90 { // one a second for 90 s, two in the last second
		m.add(t0.Add(time.Duration(i) * time.Second))
	}
	m.add(t0.Add(89 * time.Second))
	now := t0.Add(89*time.Second + 500*time.Millisecond)
	if got := m.last(now); got != 61 {
		t.Errorf("last minute at t+89.5s = %d, want 61 (seconds 30..89, the last twice)", got)
	}
	if got := m.last(now.Add(30 * time.Second)); got != 31 {
		t.Errorf("30 s later = %d, want 31", got)
	}
	if got := m.last(now.Add(2 * time.Minute)); got != 0 {
		t.Errorf("2 min later = %d, want 0", got)
	}
}
