package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// A producer that computes slots itself and gets one wrong publishes an
// intent the ordered receiver's partitions order with other subjects, not
// with its own: it can overtake or trail its subject's other intents, and
// nothing showed it. It is still delivered (nothing is lost), and it is
// now counted and logged, naming the fix. An intent on its own slot is
// neither.
func TestOrderedOffSlotIntentIsCounted(t *testing.T) {
	e := newOrderedEnv(t, 30*time.Second, nil)
	core, logs := observer.New(zapcore.WarnLevel)
	e.log = zap.New(core)
	reg := prometheus.NewRegistry()

	const email = "offslot@example.com"
	subj := map[string]any{"format": "email", "email": email}
	e.publishTxn(email, 0) // on its slot
	in := &intent.Intent{ID: "id-" + email + "-1", Type: typeRevoked, Txn: email + "-1", Subject: subj}
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	wrong := queue.SlotSubject((queue.SubjectSlot(subj) + 1) % queue.Slots)
	if _, err := e.js.Publish(context.Background(), wrong, data); err != nil {
		t.Fatal(err)
	}
	e.startWith(reg)
	eventually(t, 20*time.Second, "both intents delivered", func() bool { return len(e.delivered(email)) == 2 })
	if got := metricValueLabel(t, reg, "setrelay_intents_off_slot_total", "receiver", "r"); got != 1 {
		t.Fatalf("off-slot counter %v, want 1", got)
	}
	l := logs.FilterMessageSnippet("another slot than its subject's").All()
	if len(l) != 1 || l[0].ContextMap()["nats_subject"] != wrong {
		t.Fatalf("log lines %v, want one naming %s", l, wrong)
	}
}
