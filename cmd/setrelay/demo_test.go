package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDemoCommandJSON runs `setrelay demo` as main does and checks the exit
// status and the JSON summary.
func TestDemoCommandJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay end to end")
	}
	var out, errb bytes.Buffer
	code := execute(context.Background(), []string{"demo", "--count", "12", "--json"}, strings.NewReader(""), &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	var sum struct {
		OK          bool              `json:"ok"`
		Intents     int               `json:"intents"`
		Delivered   int               `json:"delivered"`
		Verified    int               `json:"verified"`
		DeadLetters []json.RawMessage `json:"dead_letters"`
		BadIntents  int               `json:"bad_intents"`
	}
	// --json prints only the summary: stdout must be one JSON document.
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		t.Fatalf("stdout is not the JSON summary: %v\n%s", err, out.String())
	}
	if !sum.OK || sum.Intents != 12 || sum.Delivered != 12 || sum.Verified != 12 || len(sum.DeadLetters) != sum.BadIntents || sum.BadIntents == 0 {
		t.Errorf("summary %+v", sum)
	}
}

func TestDemoCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--count", "0"},
		{"demo", "--fault-rate", "1.5"},
		{"demo", "extra-arg"},
	} {
		var out, errb bytes.Buffer
		if code := execute(context.Background(), args, strings.NewReader(""), &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want %d; stderr %s", args, code, exitUsage, errb.String())
		}
	}
}

// lockedBuffer lets the test read what the command writes while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDemoCommandKeep: with --keep the demo stays up with the ops endpoints
// it prints, and exits 0 when its context ends (Ctrl-C).
func TestDemoCommandKeep(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay end to end")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- execute(ctx, []string{"demo", "--count", "8", "--keep", "--fault-rate", "0"}, strings.NewReader(""), &out, &errb)
	}()
	opsURL := regexp.MustCompile(`ops +(http://127\.0\.0\.1:\d+)/metrics`)
	var base string
	for deadline := time.Now().Add(45 * time.Second); base == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if m := opsURL.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		}
		select {
		case code := <-done:
			t.Fatalf("demo --keep exited (%d) before cancellation\n%s\n%s", code, out.String(), errb.String())
		default:
		}
	}
	if base == "" {
		t.Fatalf("no ops address printed:\n%s", out.String())
	}
	for path, want := range map[string]string{
		"/metrics":   `setrelay_deliveries_total{outcome="delivered",receiver="demo-receiver"} 8`,
		"/jwks.json": `"kid":"demo-es256"`,
		"/healthz":   "",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, body lacks %q:\n%.600s", path, resp.StatusCode, want, body)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after Ctrl-C; stderr %s", code, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo --keep did not stop after its context was cancelled")
	}
}
