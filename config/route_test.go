package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/intent"
)

func TestRouting(t *testing.T) {
	cfg := validConfig(t) // r1: events risc.account-disabled, caep.session-revoked; r2: every catalogue type
	decode := func(doc string) *intent.Intent {
		t.Helper()
		in, err := intent.Decode([]byte(doc), intent.Options{AllowPrivateTypes: true})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	const subj = `"subject":{"format":"email","email":"a@example.com"}`
	cases := []struct {
		doc  string
		want string // recipients, comma-separated
	}{
		{`{"id":"1","type":"caep.session-revoked",` + subj + `}`, "r1,r2"},
		{`{"id":"2","type":"risc.account-enabled",` + subj + `}`, "r2"},
		{`{"id":"3","type":"caep.session-revoked",` + subj + `,"receivers":["r2"]}`, "r2"},
		{`{"id":"4","type":"risc.account-enabled",` + subj + `,"receivers":["r1"]}`, ""},
		// A private type reaches only receivers that allow private types.
		{`{"id":"5","type":"https://example.com/private",` + subj + `}`, ""},
	}
	for _, c := range cases {
		in := decode(c.doc)
		if got := strings.Join(cfg.Recipients(in), ","); got != c.want {
			t.Errorf("%s: recipients %q, want %q", c.doc, got, c.want)
		}
		if why := cfg.Unrouted(in); (why == "") != (c.want != "") {
			t.Errorf("%s: Unrouted = %q", c.doc, why)
		}
	}

	in := decode(`{"id":"6","type":"caep.session-revoked",` + subj + `,"receivers":["r1","r3","zzzzzz"]}`)
	err := cfg.CheckReceivers(in)
	var ve *intent.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 2 || ve.ID != "6" {
		t.Fatalf("CheckReceivers = %v", err)
	}
	containsAll(t, ve.Problems(),
		`receivers[1]: unknown receiver "r3": the configuration has "r1", "r2"; did you mean "r1"?`,
		`receivers[2]: unknown receiver "zzzzzz": the configuration has "r1", "r2"`)
	if strings.Contains(ve.Problems()[1], "did you mean") {
		t.Errorf("a far-off name got a suggestion: %s", ve.Problems()[1])
	}
	if err := cfg.CheckReceivers(decode(`{"id":"7","type":"caep.session-revoked",` + subj + `,"receivers":["r2"]}`)); err != nil {
		t.Errorf("configured receiver refused: %v", err)
	}
}
