package push

import (
	"errors"
	"testing"

	"github.com/cenkalti/backoff/v4"
)

func TestDeliveryErrorRetryability(t *testing.T) {
	perm := Result{Outcome: Permanent, Reason: ReasonInvalidKey, Status: 400, Err: "invalid_key", Receiver: "gov"}.Error()
	retry := Result{Outcome: Retry, Reason: ReasonHTTP5xx, Status: 503}.Error()

	var de *DeliveryError
	if !errors.As(perm, &de) || de.Temporary() {
		t.Fatalf("permanent result: %v", perm)
	}
	if !errors.As(retry, &de) || !de.Temporary() {
		t.Fatalf("retry result: %v", retry)
	}

	var pe *backoff.PermanentError
	if !errors.As(perm, &pe) || pe.Err != perm {
		t.Fatal("a permanent DeliveryError must be found as *backoff.PermanentError wrapping itself")
	}
	if errors.As(retry, &pe) {
		t.Fatal("a retryable DeliveryError must not look permanent to backoff")
	}

	// backoff.Retry itself stops at once on the permanent error.
	calls := 0
	err := backoff.Retry(func() error { calls++; return perm }, backoff.NewConstantBackOff(0))
	if calls != 1 || err != perm {
		t.Fatalf("backoff.Retry made %d calls, returned %v", calls, err)
	}
	calls = 0
	_ = backoff.Retry(func() error { calls++; return retry }, backoff.WithMaxRetries(backoff.NewConstantBackOff(0), 2))
	if calls != 3 {
		t.Fatalf("backoff.Retry made %d calls on a retryable error, want 3", calls)
	}
}
