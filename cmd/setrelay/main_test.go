package main

import (
	"testing"

	"github.com/setrelay/setrelay/internal/testenv"
)

// TestMain removes the process's SoftHSM token directory after the tests,
// which every test of the package shares and so no test's Cleanup owns.
func TestMain(m *testing.M) { testenv.Main(m) }
