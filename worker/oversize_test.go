package worker

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestOversizedIntentDeadLettered: an intent under NATS' max payload but too
// large for its dead letter (pretty-printed, so the dead letter carries it
// base64-encoded) is dead-lettered without its bytes instead of being
// redelivered forever because the dead letter cannot be stored.
func TestOversizedIntentDeadLettered(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	e.run(Config{Concurrency: 4, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, nil)

	big := []byte("{\n  \"id\": \"huge-1\",\n  \"event\": {\"note\": \"" + strings.Repeat("x", 1000<<10) + "\"}\n}")
	e.publishRaw("huge-1", big)
	e.publish(sessionRevoked("after-huge"))

	eventually(t, 5*time.Second, "the oversized intent dead-lettered and the next one delivered", func() bool {
		return len(e.deadLetters()) == 1 && d.Stats().Accepted == 1 && e.intentsLeft() == 0
	})
	dl := e.deadLetters()[0].DeadLetter
	if dl.Reason != ReasonInvalidIntent || dl.Attempts != 1 || len(dl.Intent) != 0 {
		t.Errorf("dead letter reason %q attempts %d with %d intent bytes; want invalid_intent, 1, none", dl.Reason, dl.Attempts, len(dl.Intent))
	}
	for _, want := range []string{"the limit is 65536", fmt.Sprintf("the %d intent bytes are not kept", len(big)), `they start {\n  "id": "huge-1"`} {
		if !strings.Contains(dl.Description, want) {
			t.Errorf("description %q does not contain %q", dl.Description, want)
		}
	}
}
