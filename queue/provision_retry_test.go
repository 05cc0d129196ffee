package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestTransientJSError(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"request timed out", fmt.Errorf("create stream: %w", context.DeadlineExceeded), true},
		{"nats timeout", nats.ErrTimeout, true},
		{"no responders", nats.ErrNoResponders, true},
		{"no suitable peers (500)", &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}, true},
		{"temporarily unavailable (503)", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"bad config (400)", &jetstream.APIError{Code: 400, ErrorCode: 10052, Description: "stream configuration for replicas invalid"}, false},
		{"stream not found", jetstream.ErrStreamNotFound, false},
		{"cancelled", context.Canceled, false},
		{"other", errors.New("boom"), false},
	} {
		if got := transientJSError(tc.err); got != tc.want {
			t.Errorf("%s: transient = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetryProvisionRetriesOnlyTransientErrors(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := retryProvision(ctx, func(context.Context) error {
		calls++
		if calls < 3 {
			return &jetstream.APIError{Code: 500, Description: "no suitable peers for placement"}
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("transient failures then success: err %v after %d calls, want nil after 3", err, calls)
	}

	calls = 0
	refusal := &jetstream.APIError{Code: 400, Description: "replicas > 1 not supported in non-clustered mode"}
	err = retryProvision(ctx, func(context.Context) error { calls++; return refusal })
	if !errors.Is(err, refusal) || calls != 1 {
		t.Fatalf("permanent refusal: err %v after %d calls, want the refusal after 1", err, calls)
	}

	// A caller's deadline ends a run of transient failures and says what
	// kept failing.
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err = retryProvision(dctx, func(context.Context) error { return nats.ErrTimeout })
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), nats.ErrTimeout.Error()) {
		t.Fatalf("deadline: err %v, want deadline exceeded naming the last failure", err)
	}
}
