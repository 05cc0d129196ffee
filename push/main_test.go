package push

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// token fetch goroutine, connection readers and test servers must all end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
