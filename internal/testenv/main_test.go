package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestSoftHSMDirectoryRemoved runs a test process that makes a SoftHSM
// token and checks that its directory is gone once that process exits, so
// test runs do not pile up /tmp/setrelay-softhsm-* directories.
func TestSoftHSMDirectoryRemoved(t *testing.T) {
	if os.Getenv("SETRELAY_TESTENV_SOFTHSM_CHILD") == "1" {
		// The child: make the token and tell the parent where it is.
		h := StartSoftHSM(t)
		if _, err := os.Stat(h.PINFile); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("SOFTHSM_DIR=" + softhsmDir + "\n")
		return
	}
	StartSoftHSM(t) // skips here when softhsm2 is missing, as the child would
	cmd := exec.Command(os.Args[0], "-test.run=^TestSoftHSMDirectoryRemoved$", "-test.v")
	cmd.Env = append(os.Environ(), "SETRELAY_TESTENV_SOFTHSM_CHILD=1", "SOFTHSM2_CONF=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child test process: %v\n%s", err, out)
	}
	dir := ""
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "SOFTHSM_DIR="); ok {
			dir = v
		}
	}
	if !strings.Contains(dir, "setrelay-softhsm-") {
		t.Fatalf("child did not report its token directory:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Fatalf("the child's SoftHSM directory %s is still there after it exited (stat: %v)", dir, err)
	}
}
