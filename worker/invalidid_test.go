package worker

import (
	"testing"
	"time"
)

// TestInvalidIntentDeadLetterKeepsItsID: an intent that fails validation
// but whose id parsed (and is valid) is dead-lettered under that id, so an
// operator can find the producer's record; an intent whose id is itself
// the problem gets none.
func TestInvalidIntentDeadLetterKeepsItsID(t *testing.T) {
	e := newEnv(t, 30*time.Second, "rp")
	d := e.devReceiver("rp")
	e.run(Config{Concurrency: 2, Receivers: []Receiver{e.spec(e.js, "rp", d.endpoint())}}, e.js, nil)

	e.publishRaw("bad-typed", []byte(`{"id":"bad-typed","type":"caep.session-revokd","subject":{"format":"email","email":"a@example.com"}}`))
	e.publishRaw("bad-id", []byte(`{"id":42,"type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`))
	eventually(t, 10*time.Second, "both invalid intents dead-lettered", func() bool { return len(e.deadLetters()) == 2 })
	ids := map[string]bool{}
	for _, dl := range e.deadLetters() {
		if dl.Reason != ReasonInvalidIntent {
			t.Fatalf("dead letter reason %q, want %s", dl.Reason, ReasonInvalidIntent)
		}
		ids[dl.IntentID] = true
	}
	if !ids["bad-typed"] || !ids[""] {
		t.Errorf("dead-letter intent ids %v; want bad-typed and one without an id", ids)
	}
}
