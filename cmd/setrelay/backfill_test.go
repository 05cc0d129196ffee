package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeBackfillFile writes n intents, every hundredth (from line 7) invalid,
// and returns the path and the invalid line numbers.
func writeBackfillFile(t *testing.T, n int) (string, map[int]bool) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "intents.ndjson")
	var b bytes.Buffer
	invalid := map[int]bool{}
	for i := 1; i <= n; i++ {
		if i%100 == 7 {
			invalid[i] = true
			fmt.Fprintf(&b, `{"id":"cli-%06d","type":"risc.account-disabled"}`+"\n", i)
			continue
		}
		fmt.Fprintf(&b, `{"id":"cli-%06d","type":"risc.account-disabled","subject":{"format":"email","email":"u%d@example.com"}}`+"\n", i, i)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, invalid
}

// rejectedLines reads the line numbers from a rejects file.
func rejectedLines(t *testing.T, path string) []int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rj struct {
			Line   int      `json:"line"`
			ID     string   `json:"id"`
			Errors []string `json:"errors"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rj); err != nil || len(rj.Errors) == 0 || rj.ID == "" {
			t.Errorf("reject %q: %v", sc.Text(), err)
		}
		out = append(out, rj.Line)
	}
	return out
}

func checkRejected(t *testing.T, path string, invalid map[int]bool) {
	t.Helper()
	got := rejectedLines(t, path)
	if len(got) != len(invalid) {
		t.Fatalf("rejected lines %v, want %d of them", got, len(invalid))
	}
	for _, l := range got {
		if !invalid[l] {
			t.Errorf("line %d rejected, but it is valid", l)
		}
	}
}

func TestBackfillCommand(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	path, invalid := writeBackfillFile(t, 3000)
	valid := uint64(3000 - len(invalid))

	// A dry run validates only.
	code, out, stderr := runCLI(t, "", "backfill", "--dry-run", path)
	if code != exitUsage || !strings.Contains(out, "30 invalid lines: see "+path+".rejects.ndjson") || !strings.Contains(out, "2970 valid, 30 invalid") ||
		!strings.Contains(out, "nothing published") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	if n := intentCount(t, js); n != 0 {
		t.Fatalf("a dry run stored %d intents", n)
	}
	checkRejected(t, path+".rejects.ndjson", invalid)

	code, out, stderr = runCLI(t, "", "backfill", "--nats-url", url, "--window", "64", "--progress-every", "1ms", path)
	if code != exitUsage {
		t.Fatalf("exit %d, want 2 (lines rejected)\n%s%s", code, out, stderr)
	}
	if !strings.Contains(out, fmt.Sprintf("read 3000 lines, published %d, duplicates 0, invalid 30", valid)) {
		t.Errorf("summary: %s", out)
	}
	if n := intentCount(t, js); n != valid {
		t.Errorf("stream holds %d intents, want %d", n, valid)
	}
	checkRejected(t, path+".rejects.ndjson", invalid)
	if _, err := os.Stat(path + ".checkpoint"); err != nil {
		t.Errorf("no checkpoint: %v", err)
	}

	// A file with only valid lines exits 0; from standard input too.
	var clean strings.Builder
	for i := 1; i <= 50; i++ {
		fmt.Fprintf(&clean, `{"id":"stdin-%d","type":"risc.account-disabled","subject":{"format":"email","email":"s%d@example.com"}}`+"\n", i, i)
	}
	rejects := filepath.Join(t.TempDir(), "stdin.rejects")
	code, out, stderr = runCLI(t, clean.String(), "backfill", "--nats-url", url, "--rejects", rejects, "-")
	if code != 0 || !strings.Contains(out, "published 50") {
		t.Errorf("stdin: exit %d\n%s%s", code, out, stderr)
	}
}

func TestBackfillCommandInterruptAndResume(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	path, invalid := writeBackfillFile(t, 20000)
	valid := uint64(20000 - len(invalid))

	// Interrupt (as Ctrl-C does, through the context) once some intents
	// are stored.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil && intentCount(t, js) < 3000 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	var out, errb bytes.Buffer
	code := execute(ctx, []string{"backfill", "--nats-url", url, "--rate", "20000", path}, strings.NewReader(""), &out, &errb)
	if code != exitInterrupted {
		t.Fatalf("interrupted: exit %d, want 130\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "backfill interrupted") || !strings.Contains(errb.String(), "--resume") {
		t.Errorf("interrupt summary:\n%s%s", out.String(), errb.String())
	}
	if n := intentCount(t, js); n >= valid {
		t.Fatalf("the interrupt came too late: %d of %d stored", n, valid)
	}

	code, outs, stderr := runCLI(t, "", "backfill", "--nats-url", url, "--resume", path)
	if code != exitUsage {
		t.Fatalf("resume: exit %d\n%s%s", code, outs, stderr)
	}
	if n := intentCount(t, js); n != valid {
		t.Errorf("after resume the stream holds %d intents, want %d", n, valid)
	}
	checkRejected(t, path+".rejects.ndjson", invalid)
}

func TestBackfillCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"backfill"},
		{"backfill", "--window", "0", "x.ndjson"},
		{"backfill", "--resume", "-"},
		{"backfill", filepath.Join(t.TempDir(), "missing.ndjson")},
	} {
		if code, _, stderr := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d, want 2: %s", args, code, stderr)
		}
	}
}

// TestBackfillStdinWithoutCheckpointSaysSo: 'backfill -' writes no
// checkpoint unless --checkpoint is given; an interrupted run must not
// claim one ("checkpoint at line N") nor suggest --resume.
func TestBackfillStdinWithoutCheckpointSaysSo(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for i := 0; i < 50; i++ {
			fmt.Fprintf(pw, `{"id":"stdin-%d","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`+"\n", i)
		}
		// Keep standard input open, as a slow producer would, until the
		// lines are stored; then interrupt.
		for ctx.Err() == nil && intentCount(t, js) < 50 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		// The producer goes on writing; the backfill stops at its next
		// line because it was interrupted.
		fmt.Fprintln(pw, `{"id":"stdin-late","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`)
		_ = pw.Close()
	}()
	var out, errb bytes.Buffer
	rejects := filepath.Join(t.TempDir(), "stdin.rejects.ndjson")
	code := execute(ctx, []string{"backfill", "--nats-url", url, "--rejects", rejects, "-"}, pr, &out, &errb)
	if code != exitInterrupted {
		t.Fatalf("exit %d, want 130\n%s%s", code, out.String(), errb.String())
	}
	all := out.String() + errb.String()
	if strings.Contains(all, "checkpoint at line") || strings.Contains(all, "--resume") {
		t.Errorf("claims a checkpoint it never wrote:\n%s", all)
	}
	if !strings.Contains(out.String(), "no checkpoint written (give --checkpoint") || !strings.Contains(errb.String(), "nothing to resume from") {
		t.Errorf("does not say that there is no checkpoint:\n%s", all)
	}
	if _, err := os.Stat("-.checkpoint"); err == nil {
		t.Error("a checkpoint file named after '-' was written")
	}
}

// TestBackfillResumeReportsEarlierRejects: lines rejected before an
// interrupt stay rejected after --resume finishes the file. The resumed run
// must not exit 0 ("every line was published") nor hide them, since a script
// that resumes until success would otherwise never look at the rejects file.
func TestBackfillResumeReportsEarlierRejects(t *testing.T) {
	url, js := startQueueForCLI(t, "r1")
	path := filepath.Join(t.TempDir(), "intents.ndjson")
	var b bytes.Buffer
	const n = 20000
	for i := 1; i <= n; i++ {
		if i <= 3 {
			fmt.Fprintf(&b, `{"id":"early-%06d","type":"risc.account-disabled"}`+"\n", i)
			continue
		}
		fmt.Fprintf(&b, `{"id":"early-%06d","type":"risc.account-disabled","subject":{"format":"email","email":"u%d@example.com"}}`+"\n", i, i)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil && intentCount(t, js) < 3000 {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	var out, errb bytes.Buffer
	if code := execute(ctx, []string{"backfill", "--nats-url", url, "--rate", "20000", path}, strings.NewReader(""), &out, &errb); code != exitInterrupted {
		t.Fatalf("interrupted: exit %d, want 130\n%s%s", code, out.String(), errb.String())
	}
	if stored := intentCount(t, js); stored >= n-3 {
		t.Fatalf("the interrupt came too late: %d stored", stored)
	}

	code, outs, stderr := runCLI(t, "", "backfill", "--nats-url", url, "--resume", path)
	if code != exitUsage {
		t.Errorf("resume after 3 lines were rejected: exit %d, want 2\n%s%s", code, outs, stderr)
	}
	if !strings.Contains(outs, "3 invalid lines") || !strings.Contains(outs, path+".rejects.ndjson") {
		t.Errorf("resume does not point at the 3 lines rejected before the interrupt:\n%s", outs)
	}
	// Resuming a finished backfill says the same.
	code, outs, stderr = runCLI(t, "", "backfill", "--nats-url", url, "--resume", path)
	if code != exitUsage || !strings.Contains(outs, "3 invalid lines") {
		t.Errorf("resume of a finished backfill: exit %d, want 2 and the 3 invalid lines\n%s%s", code, outs, stderr)
	}
	checkRejected(t, path+".rejects.ndjson", map[int]bool{1: true, 2: true, 3: true})
}
