package queue_test

import (
	"testing"

	"github.com/setrelay/setrelay/queue"
)

// An ordered receiver's partition consumers take the slot subjects
// setrelay.intent.<0..255>.<0..3> and its other consumer only the older
// layouts, so an intent a producer published on a two-token subject that
// is no slot (a group past 255, a leading zero, a word) reached none of
// them: the stream acknowledged it and the receiver never saw it, with no
// dead letter and no count. The stream now captures only real slot
// subjects, so such a publish fails at the producer, while every real slot
// and the older layouts are still taken.
func TestNoSlotSubjectIsRefusedAtPublish(t *testing.T) {
	cfg := testConfig(t)
	cfg.Ordered = map[string]int{"ord": 8}
	env := startEnv(t, cfg, "ord", "plain")
	body := []byte(`{"id":"x","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`)
	for _, subj := range []string{"setrelay.intent.256.0", "setrelay.intent.0.4", "setrelay.intent.07.0", "setrelay.intent.x.y", "setrelay.intent.-1.0"} {
		if _, err := env.js.Publish(ctxT(t), subj, body); err == nil {
			t.Errorf("publish on %s was acknowledged: an ordered receiver would never get it", subj)
		}
	}
	for _, subj := range []string{queue.SlotSubject(0), queue.SlotSubject(queue.Slots - 1), queue.SlotSubject(300), "setrelay.intent", "setrelay.intent.17"} {
		if _, err := env.js.Publish(ctxT(t), subj, body); err != nil {
			t.Errorf("publish on %s: %v", subj, err)
		}
	}
}
