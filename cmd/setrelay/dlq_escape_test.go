package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

// A dead letter holds text that receivers and producers chose: an older
// version stored a poll receiver's setErrs verbatim, and anything allowed
// to publish on the dead-letter subject can store any text. `dlq show` and
// `dlq list` (and `dlq replay`) print to an operator's terminal, so no C0 or C1 control
// character (ESC starting an escape sequence that retitles the window,
// clears the screen or forges lines; CSI U+009B) may reach it raw.
func TestDLQShowEscapesControlCharacters(t *testing.T) {
	url, js := startQueueForCLI(t, "alpha")
	const esc = "\x1b]0;owned\x07\x1b[2J\u009b31m"
	dl := queue.DeadLetter{
		Receiver: "alpha", Reason: "poll_rejected" + esc, Err: "invalid_key" + esc,
		Description: "kid unknown\n" + esc + "fake: delivered", Body: "busy\r" + esc,
		Errors:   []string{"subject.email: " + esc},
		Attempts: 1, FirstAttempt: time.Now(), LastAttempt: time.Now(), StreamSeq: 1, IntentID: "esc-1" + esc,
		// Valid JSON may hold C1 characters raw inside strings.
		Intent: []byte(`{"id":"esc-1","type":"caep.session-revoked","subject":{"format":"opaque","id":"x` + "\u009b" + `2J"}}`),
	}
	if err := queue.PublishDeadLetter(context.Background(), js, dl); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"dlq", "show", "1"}, {"dlq", "list"}, {"dlq", "replay", "--all", "--dry-run"}} {
		code, out, stderr := runCLI(t, "", append(args, "--nats-url", url)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		for _, r := range out {
			if (r < 0x20 && r != '\n' && r != '\t') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Errorf("%v prints control character %U raw:\n%q", args, r, out)
				break
			}
		}
		if !strings.Contains(out, "esc-1") {
			t.Errorf("%v lost the readable text:\n%s", args, out)
		}
	}
}
