package bench

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildSetrelay builds this module's setrelay command, which the scale-out
// and external-backlog measurements run as 'setrelay run' processes.
func buildSetrelay(t *testing.T) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "setrelay")
	cmd := exec.Command("go", "build", "-o", exe, "../cmd/setrelay")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// TestScaleAndExternalBacklog runs both multi-process measurements at a
// tiny size with real 'setrelay run' processes: two on a 3-node cluster
// against a receiver taking 50 ms, then one draining a small backlog from a
// separate server. The bounds are loose (the machine is shared); the bench
// itself holds the goals.
func TestScaleAndExternalBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds setrelay and starts a 3-node cluster: not in -short")
	}
	exe := buildSetrelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rs, err := Scale(ctx, ScaleOptions{Processes: []int{2}, Concurrency: 4, Measure: 2 * time.Second, Exe: exe}, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	r := rs[0]
	t.Log(r)
	if r.Expected != 160 {
		t.Errorf("expected %v SETs/s for 2 x 4 / 50ms, want 160", r.Expected)
	}
	// Well above what one process could do (80/s), and never above what
	// the receiver's delay allows.
	if r.SetsPerSec < 0.6*r.Expected || r.SetsPerSec > 1.1*r.Expected {
		t.Errorf("%.0f SETs/s with 2 processes, want near %.0f", r.SetsPerSec, r.Expected)
	}
	if len(r.RSSKB) != 2 || r.RSSKB[0] <= 0 || r.RSSKB[1] <= 0 {
		t.Errorf("RSS of the processes: %v", r.RSSKB)
	}

	b, err := ExternalBacklog(ctx, 2000, 16, exe, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	t.Log(b)
	if b.RSSStartKB <= 0 || b.RSSMaxKB < b.RSSStartKB || len(b.RSSAtTenths) == 0 {
		t.Errorf("RSS samples: %s", b)
	}
	if !strings.Contains(b.String(), "rss_max_kb=") {
		t.Errorf("RESULT line: %s", b)
	}
}
