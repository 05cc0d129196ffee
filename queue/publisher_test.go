package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

func TestPublishDuplicateIsReportedNotAnError(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	pub := queue.NewPublisher(env.js, optsNone)
	first, err := pub.Publish(ctxT(t), newIntent("dup-1"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.Sequence == 0 {
		t.Fatalf("first publish = %+v", first)
	}
	again, err := pub.Publish(ctxT(t), newIntent("dup-1"))
	if err != nil {
		t.Fatalf("duplicate publish returned an error: %v", err)
	}
	if !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("duplicate publish = %+v, want Duplicate of seq %d", again, first.Sequence)
	}
	if n := streamMsgs(t, env.js, queue.IntentStream); n != 1 {
		t.Fatalf("stream holds %d messages after a duplicate, want 1", n)
	}
}

func TestPublishRejectsInvalidIntentAndStoresNothing(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	pub := queue.NewPublisher(env.js, optsNone)
	bad := newIntent("bad 1") // a space: not a valid Nats-Msg-Id
	bad.Type = "no-such-type"
	_, err := pub.Publish(ctxT(t), bad)
	var verr *intent.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("error %v does not wrap *intent.ValidationError", err)
	}
	if len(verr.Errors) < 2 {
		t.Errorf("want every problem (id and type), got %v", verr.Errors)
	}
	if _, err := pub.Publish(ctxT(t), nil); err == nil {
		t.Error("nil intent accepted")
	}
	if n := streamMsgs(t, env.js, queue.IntentStream); n != 0 {
		t.Fatalf("invalid intents stored %d messages", n)
	}
}

func TestPublishPropagatesTraceparent(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	pub := queue.NewPublisher(env.js, optsNone)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name, id, in, want string
	}{
		{"valid", "tp-1", tp, tp},
		{"none", "tp-2", "", ""},
		{"malformed dropped", "tp-3", "00-xyz-00f067aa0ba902b7-01", ""},
		{"zero trace id dropped", "tp-4", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""},
		{"uppercase dropped", "tp-5", strings.ToUpper(tp), ""},
	}
	for _, tt := range tests {
		ctx := queue.WithTraceparent(ctxT(t), tt.in)
		if _, err := pub.Publish(ctx, newIntent(tt.id)); err != nil {
			t.Fatal(err)
		}
	}
	msgs := fetchAll(t, env.js, "govuk", len(tests), 5*time.Second)
	if len(msgs) != len(tests) {
		t.Fatalf("got %d messages", len(msgs))
	}
	for i, tt := range tests {
		if got := msgs[i].Headers().Get(queue.HeaderTraceparent); got != tt.want {
			t.Errorf("%s: traceparent header %q, want %q", tt.name, got, tt.want)
		}
		if got := msgs[i].Headers().Get(jetstream.MsgIDHeader); got != tt.id {
			t.Errorf("%s: Nats-Msg-Id %q, want %q", tt.name, got, tt.id)
		}
	}
}

func TestPublishRawKeepsBytesAndHeaders(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	pub := queue.NewPublisher(env.js, optsNone)
	data := intentBytes(t, "raw-1")
	if _, err := pub.PublishRaw(ctxT(t), "raw-1", data, map[string][]string{"X-Producer": {"billing"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishRaw(ctxT(t), "", data, nil); err == nil {
		t.Error("PublishRaw without an id was accepted: it could not be deduplicated")
	}
	msgs := fetchAll(t, env.js, "govuk", 1, 5*time.Second)
	if len(msgs) != 1 || string(msgs[0].Data()) != string(data) || msgs[0].Headers().Get("X-Producer") != "billing" {
		t.Fatalf("stored message differs: %d msgs", len(msgs))
	}
	// The intent decodes strictly on the worker's side.
	if _, err := intent.Decode(msgs[0].Data(), optsNone); err != nil {
		t.Fatalf("published bytes do not decode: %v", err)
	}
}

func TestPublishToFullStreamFailsClearly(t *testing.T) {
	cfg := testConfig(t)
	cfg.StreamMaxMsgs = 3
	env := startEnv(t, cfg, "govuk")
	pub := queue.NewPublisher(env.js, optsNone)
	for _, id := range ids("full", 3) {
		if _, err := pub.Publish(ctxT(t), newIntent(id)); err != nil {
			t.Fatal(err)
		}
	}
	_, err := pub.Publish(ctxT(t), newIntent("full-overflow"))
	if !errors.Is(err, queue.ErrStreamFull) {
		t.Fatalf("publish to a full stream: %v, want ErrStreamFull", err)
	}
	if !strings.Contains(err.Error(), "stream_max_msgs") || !strings.Contains(err.Error(), "full-overflow") {
		t.Errorf("error does not tell the operator what to do or which intent: %v", err)
	}
	// Nothing old was evicted to make room.
	msgs := fetchAll(t, env.js, "govuk", 4, time.Second)
	if len(msgs) != 3 || msgs[0].Headers().Get(jetstream.MsgIDHeader) != "full-000000" {
		t.Fatalf("stream content changed: %d msgs", len(msgs))
	}
}

func TestPublishWithoutProvisioningFailsClearly(t *testing.T) {
	env := startEnv(t, testConfig(t)) // no streams
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := queue.NewPublisher(env.js, optsNone).Publish(ctx, newIntent("np-1"))
	if !errors.Is(err, queue.ErrNotProvisioned) {
		t.Fatalf("publish with no stream: %v, want ErrNotProvisioned", err)
	}
}
