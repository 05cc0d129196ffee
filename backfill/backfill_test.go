package backfill

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/setrelay/setrelay/queue"
)

var jsonUnmarshal = json.Unmarshal

// checkRejects asserts the rejects file names exactly the invalid lines,
// once each, in order, with reasons.
func checkRejects(t *testing.T, path string, invalid map[int64]bool) {
	t.Helper()
	rejects := readRejects(t, path)
	if len(rejects) != len(invalid) {
		t.Fatalf("%d rejects, want %d", len(rejects), len(invalid))
	}
	prev := int64(0)
	for _, rj := range rejects {
		if !invalid[rj.Line] {
			t.Errorf("line %d rejected but it is valid: %v", rj.Line, rj.Errors)
		}
		if rj.Line <= prev {
			t.Errorf("line %d reported after line %d", rj.Line, prev)
		}
		prev = rj.Line
		if len(rj.Errors) == 0 || rj.Errors[0] == "" {
			t.Errorf("line %d rejected without a reason", rj.Line)
		}
	}
}

func TestBackfillRejectsExactlyTheInvalidLines(t *testing.T) {
	_, nc, js := startJS(t, "r1")
	path, invalid, valid := genFile(t, 5000)
	opts := Options{Window: 256, Checkpoint: path + ".checkpoint", Rejects: path + ".rejects.ndjson"}

	sum, err := Run(context.Background(), nc, fileSource(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Read != 5000 || sum.Published != uint64(valid) || sum.Invalid != uint64(len(invalid)) || sum.Duplicates != 0 || sum.Failed != 0 {
		t.Fatalf("summary %+v; want %d published, %d invalid", sum, valid, len(invalid))
	}
	if got := storedCount(t, js); got != uint64(valid) {
		t.Fatalf("stream holds %d intents, want %d", got, valid)
	}
	checkRejects(t, opts.Rejects, invalid)
	rejects := readRejects(t, opts.Rejects)
	for _, rj := range rejects {
		if rj.Line == 150 && rj.ID != "no-type" {
			t.Errorf("line 150's id = %q, want no-type (taken from the bad line)", rj.ID)
		}
		if rj.Line == 550 && !strings.Contains(rj.Errors[0], "longer than") {
			t.Errorf("overlong line 550: %v", rj.Errors)
		}
	}
	cp, err := LoadCheckpoint(opts.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if !cp.Done || cp.Line != 5000 || cp.Offset != fi.Size() || cp.Published != uint64(valid) || cp.Invalid != uint64(len(invalid)) {
		t.Errorf("final checkpoint %+v", cp)
	}

	// Running the same file again stores nothing new: every id is a
	// duplicate within the window.
	sum, err = Run(context.Background(), nc, fileSource(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Duplicates != uint64(valid) || sum.Published != 0 {
		t.Errorf("re-run: %d duplicates, %d published; want %d, 0", sum.Duplicates, sum.Published, valid)
	}
	if got := storedCount(t, js); got != uint64(valid) {
		t.Errorf("after re-run the stream holds %d intents, want %d", got, valid)
	}
	// A resume of a finished backfill does nothing.
	opts.Resume = true
	sum, err = Run(context.Background(), nc, fileSource(t, path), opts)
	if err != nil || sum.Read != 0 || !sum.Checkpoint.Done {
		t.Errorf("resume after done: %+v, %v", sum, err)
	}
	checkRejects(t, opts.Rejects, invalid)
}

func TestBackfillInterruptAndResumeStoresExactlyOnce(t *testing.T) {
	_, nc, js := startJS(t, "r1")
	path, invalid, valid := genFile(t, 6000)
	stopAfter := uint64(500 + rand.IntN(4000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var acks atomic.Uint64
	opts := Options{
		Window: 512, Checkpoint: path + ".checkpoint", Rejects: path + ".rejects.ndjson",
		CheckpointEvery: 20 * time.Millisecond,
		OnResult: func(queue.BatchResult) {
			if acks.Add(1) == stopAfter {
				cancel()
			}
		},
	}
	sum, err := Run(ctx, nc, fileSource(t, path), opts)
	if !errors.Is(err, ErrInterrupted) || !sum.Interrupted {
		t.Fatalf("interrupted run: %v, %+v", err, sum)
	}
	cp, err := LoadCheckpoint(opts.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Done || cp.Line <= 0 || cp.Line >= 6000 {
		t.Fatalf("checkpoint after interrupt at ack %d: %+v", stopAfter, cp)
	}
	stored := storedCount(t, js)
	if cp.Published > stored {
		t.Fatalf("checkpoint claims %d published, stream holds %d", cp.Published, stored)
	}
	t.Logf("interrupted after %d acks: checkpoint line %d, %d stored", stopAfter, cp.Line, stored)

	opts.Resume, opts.OnResult = true, nil
	sum, err = Run(context.Background(), nc, fileSource(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.StartLine != cp.Line || sum.Read != uint64(6000-cp.Line) {
		t.Errorf("resume read %d lines from line %d; checkpoint was line %d", sum.Read, sum.StartLine, cp.Line)
	}
	ids := storedIDs(t, js)
	if len(ids) != valid {
		t.Fatalf("%d distinct intents stored, want %d", len(ids), valid)
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("intent %s stored %d times", id, n)
		}
	}
	checkRejects(t, opts.Rejects, invalid)
	final, err := LoadCheckpoint(opts.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	if !final.Done || final.Invalid != uint64(len(invalid)) || final.Published+final.Duplicates < uint64(valid) {
		t.Errorf("final checkpoint %+v", final)
	}
}

func TestBackfillDryRunPublishesNothing(t *testing.T) {
	path, invalid, valid := genFile(t, 1000)
	opts := Options{DryRun: true, Checkpoint: path + ".checkpoint", Rejects: path + ".rejects.ndjson"}
	sum, err := Run(context.Background(), nil, fileSource(t, path), opts)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Valid != uint64(valid) || sum.Invalid != uint64(len(invalid)) || sum.Published != 0 {
		t.Errorf("dry run summary %+v", sum)
	}
	checkRejects(t, opts.Rejects, invalid)
	if _, err := os.Stat(opts.Checkpoint); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dry run wrote a checkpoint: %v", err)
	}
}

func TestResumeRefusesAnotherFile(t *testing.T) {
	path, _, _ := genFile(t, 10)
	cpPath := path + ".checkpoint"
	if err := (Checkpoint{File: "other.ndjson", Size: 10, Line: 3, Offset: 30}).Save(cpPath); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), nil, fileSource(t, path), Options{DryRun: false, Resume: true, Checkpoint: cpPath})
	if err == nil || !strings.Contains(err.Error(), "other.ndjson") {
		t.Errorf("resume with another file's checkpoint: %v", err)
	}
	if err := (Checkpoint{File: path, Size: 1, Line: 3, Offset: 30}).Save(cpPath); err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), nil, fileSource(t, path), Options{Resume: true, Checkpoint: cpPath})
	if err == nil || !strings.Contains(err.Error(), "file changed") {
		t.Errorf("resume of a changed file: %v", err)
	}
}

func TestReaderSkipsOverlongLinesAndKeepsOffsets(t *testing.T) {
	long := strings.Repeat("y", maxLine*3)
	in := "a\n" + long + "\nb\r\nc"
	lr := newLineReader(strings.NewReader(in))
	type got struct {
		line    string
		n       int64
		tooLong bool
	}
	want := []got{{"a\n", 2, false}, {"", int64(len(long) + 1), true}, {"b\r\n", 3, false}, {"c", 1, false}}
	for i, w := range want {
		line, n, tooLong, err := lr.next()
		if err != nil || string(line) != w.line || n != w.n || tooLong != w.tooLong {
			t.Errorf("line %d: %q %d %v %v; want %q %d %v", i, line, n, tooLong, err, w.line, w.n, w.tooLong)
		}
	}
	if _, _, _, err := lr.next(); err == nil {
		t.Error("no EOF at the end")
	}
}

func TestRateLimit(t *testing.T) {
	_, nc, _ := startJS(t, "r1")
	path, _, _ := genFile(t, 120)
	start := time.Now()
	sum, err := Run(context.Background(), nc, fileSource(t, path), Options{Rate: 200, Rejects: path + ".rej"})
	if err != nil {
		t.Fatal(err)
	}
	// 119 valid intents at 200/s with a burst of 20 take at least ~0.5 s.
	if el := time.Since(start); el < 400*time.Millisecond {
		t.Errorf("%d publishes at --rate 200 took %s", sum.Published, el)
	}
}

// A publish JetStream refuses (here: the stream is full) stops the run with
// an error; the checkpoint stays before the refused line, so that a resume
// after the cause is fixed publishes it and nothing after it is skipped.
func TestBackfillStopsAtARefusedPublish(t *testing.T) {
	_, nc, js := startJSWith(t, queue.Config{StreamMaxMsgs: 300}, "r1")
	path, _, _ := genFile(t, 2000)
	var progress strings.Builder
	opts := Options{Window: 64, Checkpoint: path + ".checkpoint", Rejects: path + ".rejects.ndjson",
		Progress: &lockedWriter{w: &progress}, ProgressEvery: time.Millisecond}
	sum, err := Run(context.Background(), nc, fileSource(t, path), opts)
	if !errors.Is(err, queue.ErrStreamFull) {
		t.Fatalf("error %v, want ErrStreamFull", err)
	}
	if sum.Failed == 0 || sum.Published != 300 || storedCount(t, js) != 300 {
		t.Errorf("summary %s; stream holds %d", sum, storedCount(t, js))
	}
	cp, err := LoadCheckpoint(opts.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}
	// 300 stored intents are lines 1..303 (lines 50, 150 and 250 are
	// invalid); the first refused one is line 304.
	if cp.Done || cp.Line != 303 || cp.Published != 300 {
		t.Errorf("checkpoint %+v, want line 303, 300 published", cp)
	}
	if !strings.Contains(progress.String(), "lines read") {
		t.Errorf("no plain progress lines: %q", progress.String())
	}
}

// lockedWriter lets the test read what the reporter goroutine wrote.
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestBackfillFilesAreOwnerOnly: the rejects file holds intents (personal
// data) and the checkpoint names the files and positions; both are written
// 0600, and a rejects file left 0644 by an older run is narrowed. The
// umask is cleared so that it cannot be what narrows the mode.
func TestBackfillFilesAreOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	path, invalid, _ := genFile(t, 300)
	if len(invalid) == 0 {
		t.Fatal("generated file has no invalid lines")
	}
	opts := Options{DryRun: true, Rejects: path + ".rejects.ndjson"}
	if err := os.WriteFile(opts.Rejects, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), nil, fileSource(t, path), opts); err != nil {
		t.Fatal(err)
	}
	checkRejects(t, opts.Rejects, invalid)
	cp := filepath.Join(t.TempDir(), "backfill.checkpoint")
	if err := (Checkpoint{}).Save(cp); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{opts.Rejects, cp} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %#o, want 0600", filepath.Base(f), fi.Mode().Perm())
		}
	}
}
