package queue_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the package starts (batch result collectors, connections,
// embedded servers) must be gone when the tests end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
