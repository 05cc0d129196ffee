package status

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestReportTextAndJSON(t *testing.T) {
	delivered, left := int64(7), 42*time.Minute
	rep := Report{
		At: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC),
		Receivers: []Receiver{
			{Name: "gov", State: StateOK, DeliveredLastMinute: &delivered, TokenLeft: &left},
			{Name: "acme", State: StateBlocked, Reason: "token_config", Fix: "check receivers[1].auth.client_secret_file",
				Since: time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), Pending: 12, InFlight: 1, OldestPending: 90 * time.Second,
				DeadLetters: 3, DeadLettersLastHour: 1, LastError: "token_config"},
		},
		OpsErrors: []string{"ops http://relay-2:9464 unreachable: connection refused"},
	}
	if !rep.Blocked() {
		t.Error("Blocked() = false with a blocked receiver")
	}
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`^RECEIVER\s+STATE\s+PENDING\s+IN FLIGHT\s+OLDEST\s+DELIVERED 1m\s+DEAD LETTERS \(1h\)\s+TOKEN LEFT\s+LAST ERROR$`,
		`^gov\s+ok\s+0\s+0\s+-\s+7\s+0 \(0\)\s+42m0s\s+-$`,
		`^acme\s+blocked \(token_config\)\s+12\s+1\s+1m30s\s+-\s+3 \(1\)\s+-\s+token_config$`,
		`^acme is blocked since 2026-11-30T08:00:00Z: check receivers\[1\]\.auth\.client_secret_file; once fixed, run 'setrelay receivers unblock acme'$`,
		`^warning: ops http://relay-2:9464 unreachable`,
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, re := range want {
		if !matches(re, lines[i]) {
			t.Errorf("line %d = %q, want %s", i, lines[i], re)
		}
	}

	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"oldest_pending_seconds":90`, `"token_left_seconds":2520`, `"delivered_last_minute":7`, `"state":"blocked"`} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("JSON lacks %s: %s", s, data)
		}
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Receivers[1].OldestPending != 90*time.Second || *back.Receivers[0].TokenLeft != left || back.Receivers[1].Fix != rep.Receivers[1].Fix {
		t.Errorf("JSON round trip: %+v", back.Receivers)
	}
}

func TestWorstStateWins(t *testing.T) {
	r := Receiver{State: StateOK}
	r.raise(StateFailing, "http_5xx", time.Time{})
	r.raise(StateOK, "", time.Time{})
	if r.State != StateFailing || r.Reason != "http_5xx" {
		t.Errorf("after failing then ok: %s (%s)", r.State, r.Reason)
	}
	r.raise(StateBlocked, "endpoint_not_found", time.Time{})
	r.raise(StatePaused, "timeout", time.Time{})
	if r.State != StateBlocked || r.Reason != "endpoint_not_found" {
		t.Errorf("after blocked then paused: %s (%s)", r.State, r.Reason)
	}
}

func matches(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
