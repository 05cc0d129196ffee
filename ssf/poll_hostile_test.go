package ssf_test

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
)

// A poll receiver's setErrs err and description are text an untrusted
// party chose, and they end up in a dead letter that `setrelay dlq show`
// prints to an operator's terminal and in log lines. Control characters
// (ESC starting a terminal escape sequence, C1 CSI, newlines forging a
// second line) must arrive escaped, the text valid UTF-8 even where a long
// description was cut inside a character, and both bounded.
func TestPollSetErrsControlCharactersAreEscaped(t *testing.T) {
	x := newTX(t, txOptions{PollAckWait: time.Second})
	id := x.createPoll(tokenA, caepType)["stream_id"].(string)
	x.publish(sessionRevoked("hostile-seterr", "a@example.com"))
	got := x.poll(tokenA, id, map[string]any{"returnImmediately": true})
	if len(got.Sets) != 1 {
		t.Fatalf("%d SETs", len(got.Sets))
	}
	var jti string
	for j := range got.Sets {
		jti = j
	}
	errText := "invalid_key\x1b]0;owned\x07"
	// 'é' is two bytes, so an odd-length prefix ends inside one.
	desc := "line one\n\x1b[2J\u009b31mfake: all good\r" + strings.Repeat("é", 3000)
	x.poll(tokenA, id, map[string]any{"maxEvents": 0, "setErrs": map[string]any{jti: map[string]any{"err": errText, "description": desc}}})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dls, err := queue.NewDLQ(x.js.JS).List(ctx, queue.Filter{Receiver: ssf.ReceiverName(id)})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters", len(dls))
	}
	dl := dls[0]
	for name, v := range map[string]string{"err": dl.Err, "description": dl.Description} {
		if !utf8.ValidString(v) {
			t.Errorf("%s is not valid UTF-8: %q", name, v)
		}
		for _, r := range v {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Errorf("%s holds control character %U: %q", name, r, v)
				break
			}
		}
		if len(v) > 2048 {
			t.Errorf("%s is %d bytes", name, len(v))
		}
	}
	if !strings.HasPrefix(dl.Err, "invalid_key") || !strings.Contains(dl.Description, `line one\n`) {
		t.Fatalf("the receiver's words are no longer readable: err %q description %q", dl.Err, dl.Description)
	}
}
