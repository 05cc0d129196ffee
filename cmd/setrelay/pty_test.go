package main

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// openPTY opens a real pseudo-terminal and returns its controlling side
// (what the operator types into) and its terminal side (the command's
// standard input, which term.IsTerminal recognises).
func openPTY(t *testing.T) (ctl, tty *os.File) {
	t.Helper()
	ctl, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { ctl.Close() })
	fd := int(ctl.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("ptsname: %v", err)
	}
	tty, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here (devpts not mounted?): %v", err)
	}
	t.Cleanup(func() { tty.Close() })
	return ctl, tty
}

// runCLIOnTTY runs the command line with a pseudo-terminal as standard
// input, on which answer has already been typed.
func runCLIOnTTY(t *testing.T, answer string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctl, tty := openPTY(t)
	if _, err := ctl.WriteString(answer); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code = execute(context.Background(), args, tty, &out, &errb)
	return code, out.String(), errb.String()
}
