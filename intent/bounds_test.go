package intent

import (
	"errors"
	"strings"
	"testing"
)

// manyProblems is the 65,534-byte intent from issue 11: every receiver is a
// number, so a naive validator reports 32,718 problems.
func manyProblems() []byte {
	head := `{"id":"x","type":"caep.session-revoked","receivers":[`
	n := (65534 - len(head) - 2 + 1) / 2
	b := []byte(head + strings.Repeat("0,", n-1) + "0]}")
	for len(b) < 65534 { // pad the id to hit the exact size
		b = []byte(strings.Replace(string(b), `"id":"x`, `"id":"xx`, 1))
	}
	return b
}

// TestProblemsAreBounded: an intent with tens of thousands of problems
// gives a bounded error that lists the first MaxProblems, counts the rest,
// and still says what is wrong.
func TestProblemsAreBounded(t *testing.T) {
	data := manyProblems()
	if len(data) != 65534 {
		t.Fatalf("test intent is %d bytes", len(data))
	}
	_, err := Decode(data, Options{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	if len(ve.Errors) != MaxProblems || ve.Total() < 30000 {
		t.Fatalf("listed %d, total %d; want %d listed of the ~32,700 found", len(ve.Errors), ve.Total(), MaxProblems)
	}
	msg := err.Error()
	if len(msg) > MaxErrorLength || len(msg) > 8<<10 {
		t.Errorf("error is %d bytes", len(msg))
	}
	if !strings.Contains(msg, "receivers[0]: must be a receiver name string") || !strings.Contains(msg, "more problems not listed") {
		t.Errorf("error does not say what is wrong and how much more: %.300s", msg)
	}
	probs := ve.Problems()
	if len(probs) != MaxProblems+1 || !strings.Contains(probs[MaxProblems], "more problems") {
		t.Errorf("Problems() has %d lines, last %q", len(probs), probs[len(probs)-1])
	}
	if s := ve.Summary(); !strings.HasPrefix(s, "invalid intent: receivers[0]: ") || !strings.Contains(s, "more problems (see errors)") ||
		strings.Contains(s, "receivers[1]") {
		t.Errorf("Summary() = %q; want the first problem and a count, not the list", s)
	}
}

// TestLongNamesAreBounded: a member name of 60,000 bytes appears in a path,
// which is cut so the error stays small.
func TestLongNamesAreBounded(t *testing.T) {
	name := strings.Repeat("é", 30000)
	_, err := Decode([]byte(`{"id":"x","type":"caep.session-revoked","subject":{"format":"opaque","id":"1"},"`+name+`":1}`), Options{})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 {
		t.Fatalf("want one problem, got %v", err)
	}
	if f := ve.Errors[0].Field; len(f) > MaxFieldLength || !strings.HasSuffix(f, "...") {
		t.Errorf("field is %d bytes: %.80q", len(f), f)
	}
	if len(err.Error()) > 1024 {
		t.Errorf("error is %d bytes", len(err.Error()))
	}
}
