package chaos

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one child process of the run. Its stdout and stderr go to files in
// the run's log directory, one pair per start, so the end-of-run scans (panics,
// secrets) see everything every incarnation wrote.
type proc struct {
	name    string
	bin     string
	args    []string
	env     []string
	logDir  string
	starts  int
	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when the current incarnation has exited
	exitErr error
	logs    []string // every log file written, across restarts
}

func newProc(name, bin, logDir string, env []string, args ...string) *proc {
	return &proc{name: name, bin: bin, args: args, env: env, logDir: logDir}
}

// start launches a new incarnation. The previous one must have exited.
func (p *proc) start(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isClosed(p.done) {
		t.Fatalf("%s: start while still running", p.name)
	}
	p.starts++
	base := filepath.Join(p.logDir, fmt.Sprintf("%s.%d", p.name, p.starts))
	stdout, err := os.Create(base + ".stdout")
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(base + ".stderr")
	if err != nil {
		t.Fatal(err)
	}
	p.logs = append(p.logs, stdout.Name(), stderr.Name())
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// A process group of its own, so a ^C to `go test` does not reach the
	// children before the test's cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		t.Fatalf("%s: start: %v", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		stdout.Close()
		stderr.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
}

// running reports whether the current incarnation is alive.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isClosed(p.done)
}

// signal sends sig to the current incarnation; a process that has already
// exited is not an error.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isClosed(done) {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	return nil
}

// wait waits up to d for the current incarnation to exit and returns its
// exit error (nil for exit status 0).
func (p *proc) wait(d time.Duration) (exited bool, err error) {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true, nil
	}
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return true, p.exitErr
	case <-time.After(d):
		return false, nil
	}
}

// kill SIGKILLs the current incarnation and waits for it to be reaped.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	if err := p.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exited, _ := p.wait(10 * time.Second); !exited {
		t.Fatalf("%s: still running 10s after SIGKILL", p.name)
	}
}

// stop asks the process to shut down with SIGTERM, waits up to grace, and
// SIGKILLs it after that. It returns the exit error of a graceful exit, or an
// error saying it had to be killed.
func (p *proc) stop(t testing.TB, grace time.Duration) error {
	t.Helper()
	if !p.running() {
		return nil
	}
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	exited, err := p.wait(grace)
	if exited {
		return err
	}
	p.kill(t)
	return fmt.Errorf("%s: did not exit within %v of SIGTERM; killed", p.name, grace)
}

// logFiles lists every stdout/stderr file of every incarnation.
func (p *proc) logFiles() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// stderrFiles lists the stderr files of every incarnation.
func (p *proc) stderrFiles() []string {
	var out []string
	for _, f := range p.logFiles() {
		if filepath.Ext(f) == ".stderr" {
			out = append(out, f)
		}
	}
	return out
}

func isClosed(c chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
}
