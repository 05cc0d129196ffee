package queue_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

func bigDeadLetter(intentBytes int, problems int) queue.DeadLetter {
	errs := make([]string, problems)
	for i := range errs {
		errs[i] = "receivers[" + strings.Repeat("9", 5) + "]: must be a receiver name string, got number"
	}
	// Pretty-printed, so it is carried base64-encoded (a third larger).
	in := []byte("{\n  \"id\": \"big-1\",\n  \"note\": \"" + strings.Repeat("x", intentBytes) + "\"\n}")
	return queue.DeadLetter{
		Receiver: "rp", Reason: "invalid_intent", LastReason: "http_5xx", Status: 503, Err: "temporarily_unavailable",
		Description: strings.Repeat("d", 5000), Body: strings.Repeat("b", 5000), Attempts: 7,
		FirstAttempt: time.Unix(1795752000, 0).UTC(), LastAttempt: time.Unix(1795752060, 0).UTC(),
		StreamSeq: 42, IntentID: "big-1", Intent: in, Errors: errs, ReplayOf: 9,
	}
}

// TestFitDeadLetterTrimsInOrder: a dead letter over its budget is trimmed
// in the documented order, only as far as needed, and never loses the
// fields that say what happened.
func TestFitDeadLetterTrimsInOrder(t *testing.T) {
	dl := bigDeadLetter(20000, 200)
	full, _, err := queue.FitDeadLetter(dl, 0)
	if err != nil {
		t.Fatal(err)
	}
	afterErrors, _, _ := queue.FitDeadLetter(dl, len(full)-100)
	for _, tc := range []struct {
		name    string
		budget  int
		trimmed []string
		intent  bool
	}{
		{"fits", len(full), nil, true},
		{"errors first", len(full) - 100, []string{"errors"}, true},
		{"then body and description", len(afterErrors) - 7000, []string{"errors", "body", "description"}, true},
		{"then the intent", 20000, []string{"errors", "body", "description", "intent"}, false},
		{"then everything", 1500, []string{"errors", "body", "description", "intent"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, got, err := queue.FitDeadLetter(dl, tc.budget)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) > tc.budget {
				t.Fatalf("%d bytes over the budget %d", len(data), tc.budget)
			}
			if !equalPrefix(got.Trimmed, tc.trimmed) {
				t.Errorf("trimmed %v, want (at least) %v", got.Trimmed, tc.trimmed)
			}
			var back queue.DeadLetter
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatal(err)
			}
			if back.Receiver != "rp" || back.Reason != "invalid_intent" || back.LastReason != "http_5xx" || back.Status != 503 ||
				back.Err != "temporarily_unavailable" || back.Attempts != 7 || back.StreamSeq != 42 || back.IntentID != "big-1" ||
				back.ReplayOf != 9 || !back.FirstAttempt.Equal(dl.FirstAttempt) || !back.LastAttempt.Equal(dl.LastAttempt) {
				t.Errorf("an untrimmable field changed: %+v", back)
			}
			if keeps := bytes.Equal(back.Intent, dl.Intent); keeps != tc.intent {
				t.Errorf("intent kept: %v, want %v", keeps, tc.intent)
			}
			if !tc.intent {
				if back.IntentSize != len(dl.Intent) || !strings.Contains(back.Description, "intent bytes are not kept") && !strings.Contains(back.Description, "...") {
					t.Errorf("dropped intent not recorded: size %d, description %.120q", back.IntentSize, back.Description)
				}
			}
			if tc.trimmed == nil && len(back.Trimmed) != 0 {
				t.Errorf("trimmed %v from a dead letter that fits", back.Trimmed)
			}
		})
	}
	if _, _, err := queue.FitDeadLetter(dl, 200); !errors.Is(err, queue.ErrDeadLetterTooLarge) {
		t.Errorf("a budget smaller than the untrimmable fields: %v, want ErrDeadLetterTooLarge", err)
	}
}

func equalPrefix(got, want []string) bool {
	if len(got) < len(want) {
		return false
	}
	for i := range want {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// TestPublishDeadLetterFitsMaxPayload: against a real server with a small
// max_payload, a dead letter that would exceed it is stored, trimmed to fit,
// instead of failing with "maximum payload exceeded" on every attempt.
func TestPublishDeadLetterFitsMaxPayload(t *testing.T) {
	const maxPayload = 64 << 10
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), MaxPayload: maxPayload, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := queue.Provision(ctxT(t), js, testConfig(t), []string{"rp"}); err != nil {
		t.Fatal(err)
	}
	dl := bigDeadLetter(60000, 500) // about 90 KB encoded
	if full, _, _ := queue.FitDeadLetter(dl, 0); len(full) <= maxPayload {
		t.Fatalf("test dead letter is only %d bytes", len(full))
	}
	ctx := queue.WithTraceparent(ctxT(t), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	if err := queue.PublishDeadLetter(ctx, js, dl); err != nil {
		t.Fatalf("PublishDeadLetter: %v", err)
	}
	got, err := queue.NewDLQ(js).List(ctxT(t), queue.Filter{Receiver: "rp"})
	if err != nil || len(got) != 1 {
		t.Fatalf("List: %d, %v", len(got), err)
	}
	if got[0].IntentID != "big-1" || got[0].Reason != "invalid_intent" || len(got[0].Trimmed) == 0 {
		t.Errorf("stored %+v", got[0].DeadLetter)
	}
}
