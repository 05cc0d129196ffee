package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// deadLetter stores a dead letter as the worker would.
func deadLetter(t *testing.T, js jetstream.JetStream, receiver, reason string, streamSeq uint64) {
	t.Helper()
	id := fmt.Sprintf("dl-%s-%d", receiver, streamSeq)
	dl := queue.DeadLetter{
		Receiver: receiver, Reason: reason, Status: 400, Err: "invalid_audience",
		Description: "aud is not mine", Body: `{"err":"invalid_audience","description":"aud is not mine"}`,
		Attempts: 3, FirstAttempt: time.Now().Add(-time.Minute), LastAttempt: time.Now(),
		StreamSeq: streamSeq, IntentID: id,
		Intent: []byte(`{"id":"` + id + `","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`),
	}
	if reason != "invalid_audience" {
		dl.Status, dl.Err, dl.Description, dl.Body, dl.LastReason = 503, "", "", "busy", "http_5xx"
	}
	if err := queue.PublishDeadLetter(context.Background(), js, dl); err != nil {
		t.Fatal(err)
	}
}

func dlqCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	return testenv.StreamMsgs(t, js, queue.DLQStream)
}

func TestDLQListShowFilters(t *testing.T) {
	url, js := startQueueForCLI(t, "alpha", "beta")
	deadLetter(t, js, "alpha", "invalid_audience", 1) // dlq seq 1
	deadLetter(t, js, "beta", "http_5xx", 2)          // 2
	time.Sleep(20 * time.Millisecond)
	mid := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(20 * time.Millisecond)
	deadLetter(t, js, "alpha", "http_5xx", 3) // 3

	seqs := func(out string) []string {
		var s []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
			s = append(s, strings.Fields(l)[0])
		}
		return s
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "1 2 3"},
		{[]string{"--receiver", "alpha"}, "1 3"},
		{[]string{"--reason", "http_5xx"}, "2 3"},
		{[]string{"--receiver", "alpha", "--reason", "http_5xx"}, "3"},
		{[]string{"--since", mid}, "3"},
		{[]string{"--until", mid}, "1 2"},
		{[]string{"--since", "1h", "--limit", "2"}, "1 2"},
	} {
		args := append([]string{"dlq", "list", "--nats-url", url}, tc.args...)
		code, out, stderr := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr)
		}
		if got := strings.Join(seqs(out), " "); got != tc.want {
			t.Errorf("%v: seqs %q, want %q\n%s", tc.args, got, tc.want, out)
		}
	}

	code, out, _ := runCLI(t, "", "dlq", "list", "--nats-url", url, "--receiver", "alpha")
	if code != 0 || !regexp.MustCompile(`(?m)^SEQ\s+TIME\s+RECEIVER\s+REASON\s+STATUS\s+ERR\s+ATTEMPTS\s+INTENT$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^1\s+\S+Z\s+alpha\s+invalid_audience\s+400\s+invalid_audience\s+3\s+dl-alpha-1$`).MatchString(out) {
		t.Errorf("table:\n%s", out)
	}
	code, out, _ = runCLI(t, "", "dlq", "list", "--nats-url", url, "--reason", "nothing-like-this")
	if code != 0 || !strings.Contains(out, "no dead letters match") {
		t.Errorf("empty list: %d %q", code, out)
	}

	code, out, _ = runCLI(t, "", "dlq", "list", "--nats-url", url, "--json", "--receiver", "beta")
	var got queue.StoredDeadLetter
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Seq != 2 || got.Reason != "http_5xx" || got.Receiver != "beta" {
		t.Errorf("--json: %d %q", code, out)
	}

	code, out, _ = runCLI(t, "", "dlq", "show", "1", "--nats-url", url)
	for _, want := range []string{"reason:", "invalid_audience", "status:", "400", "description:", "aud is not mine",
		"attempts:", "first attempt:", "last attempt:", "body:", `"err":"invalid_audience"`, "intent:", `"id": "dl-alpha-1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("show: exit %d", code)
	}
	if strings.Contains(out, "last failure:") {
		t.Errorf("show prints a last failure for a permanent rejection:\n%s", out)
	}
	code, out, _ = runCLI(t, "", "dlq", "show", "2", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "last failure:") || !strings.Contains(out, "http_5xx") {
		t.Errorf("show of a retried dead letter lacks its last failure: %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", "dlq", "show", "2", "--json", "--nats-url", url)
	if code != 0 || json.Unmarshal([]byte(out), &got) != nil || got.Seq != 2 || string(got.Intent) == "" {
		t.Errorf("show --json: %d %q", code, out)
	}
	if code, _, stderr := runCLI(t, "", "dlq", "show", "99", "--nats-url", url); code != exitUsage || !strings.Contains(stderr, "not found") {
		t.Errorf("show missing: %d %s", code, stderr)
	}
	for _, args := range [][]string{{"dlq", "show", "x"}, {"dlq", "list", "--since", "yesterday"}, {"dlq", "list", "--since", "1h", "--until", "2h"}} {
		if code, _, stderr := runCLI(t, "", args...); code != exitUsage {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}

func TestDLQReplay(t *testing.T) {
	url, js := startQueueForCLI(t, "alpha", "beta")
	deadLetter(t, js, "alpha", "invalid_audience", 1) // 1
	deadLetter(t, js, "beta", "invalid_audience", 2)  // 2
	deadLetter(t, js, "alpha", "http_5xx", 3)         // 3
	deadLetter(t, js, "alpha", "invalid_audience", 4) // 4

	// A dry run changes nothing.
	code, out, _ := runCLI(t, "", "dlq", "replay", "--all", "--receiver", "alpha", "--reason", "invalid_audience", "--dry-run", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "would replay seq=1 receiver=alpha") || !strings.Contains(out, "would replay seq=4") ||
		strings.Contains(out, "seq=3") || !strings.Contains(out, "2 dead letters would be replayed") {
		t.Errorf("dry run: %d\n%s", code, out)
	}
	if dlqCount(t, js) != 4 || intentCount(t, js) != 0 {
		t.Fatal("the dry run changed something")
	}

	// One replay: queued on the receiver's replay subject with the link to
	// the dead letter, which is then gone.
	code, out, stderr := runCLI(t, "", "dlq", "replay", "2", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "replayed seq=2 receiver=beta intent=dl-beta-2 as intent seq=1") {
		t.Fatalf("replay 2: %d\n%s%s", code, out, stderr)
	}
	s, err := js.Stream(context.Background(), queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !queue.IsReplayFor(msg.Subject, "beta") || msg.Header.Get(queue.HeaderReplayOf) != "2" ||
		!strings.Contains(string(msg.Data), `"id":"dl-beta-2"`) {
		t.Errorf("replayed message: %s %v %s", msg.Subject, msg.Header, msg.Data)
	}
	if dlqCount(t, js) != 3 {
		t.Error("the replayed dead letter is still there")
	}
	if code, _, _ := runCLI(t, "", "dlq", "replay", "2", "--nats-url", url); code != exitUsage {
		t.Errorf("replaying a gone dead letter: exit %d", code)
	}

	// --all with filters.
	code, out, _ = runCLI(t, "", "dlq", "replay", "--all", "--receiver", "alpha", "--reason", "invalid_audience", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "2 dead letters replayed") {
		t.Errorf("replay --all: %d\n%s", code, out)
	}
	if dlqCount(t, js) != 1 || intentCount(t, js) != 3 {
		t.Errorf("after replay --all: %d dead letters, %d intents", dlqCount(t, js), intentCount(t, js))
	}

	for _, args := range [][]string{{"dlq", "replay"}, {"dlq", "replay", "3", "--all"}, {"dlq", "replay", "3", "--receiver", "alpha"}} {
		if code, _, stderr := runCLI(t, "", append(args, "--nats-url", url)...); code != exitUsage {
			t.Errorf("%v: exit %d: %s", args, code, stderr)
		}
	}
}

func TestDLQPurge(t *testing.T) {
	url, js := startQueueForCLI(t, "alpha", "beta")
	deadLetter(t, js, "alpha", "http_5xx", 1)
	deadLetter(t, js, "beta", "http_5xx", 2)
	deadLetter(t, js, "alpha", "invalid_audience", 3)

	// Without a terminal to ask on, --yes is required.
	code, _, stderr := runCLI(t, "yes\n", "dlq", "purge", "--receiver", "alpha", "--nats-url", url)
	if code != exitUsage || !strings.Contains(stderr, "--yes") || dlqCount(t, js) != 3 {
		t.Fatalf("purge without --yes: exit %d: %s", code, stderr)
	}
	code, out, _ := runCLI(t, "", "dlq", "purge", "--receiver", "alpha", "--reason", "http_5xx", "--yes", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "1 dead letters purged") || dlqCount(t, js) != 2 {
		t.Fatalf("purge: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "", "dlq", "list", "--nats-url", url); code != 0 || strings.Contains(out, "\n1 ") {
		t.Errorf("purged dead letter still listed:\n%s", out)
	}
	code, out, _ = runCLI(t, "", "dlq", "purge", "--yes", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "2 dead letters purged") || dlqCount(t, js) != 0 {
		t.Errorf("purge all: %d %q", code, out)
	}
}

// TestDLQPurgeDeclined: on a terminal, answering anything but "yes" purges
// nothing, says so, and is not a failure (exit 0); "yes" purges.
func TestDLQPurgeDeclined(t *testing.T) {
	url, js := startQueueForCLI(t, "alpha")
	deadLetter(t, js, "alpha", "http_5xx", 1)
	code, out, stderr := runCLIOnTTY(t, "n\n", "dlq", "purge", "--nats-url", url)
	if code != 0 || !strings.Contains(stderr, "Delete 1 dead letters for good?") || !strings.Contains(stderr, `not confirmed (answered "n"): nothing was changed`) {
		t.Fatalf("answering n: exit %d: %q %q", code, out, stderr)
	}
	if n := dlqCount(t, js); n != 1 {
		t.Fatalf("declined purge left %d dead letters, want 1", n)
	}
	code, out, stderr = runCLIOnTTY(t, "yes\n", "dlq", "purge", "--nats-url", url)
	if code != 0 || !strings.Contains(out, "1 dead letters purged") || dlqCount(t, js) != 0 {
		t.Fatalf("answering yes: exit %d: %q %q", code, out, stderr)
	}
}

// TestDLQReceiverTypoIsNamed: 'dlq list --receiver govk' (a typo) printed
// only "no dead letters match", exactly what a receiver without dead letters
// gets, so the operator concluded there were none. The receivers that do
// have dead letters are named on stderr, with a did-you-mean; stdout and
// the exit status stay as they were for scripts.
func TestDLQReceiverTypoIsNamed(t *testing.T) {
	url, js := startQueueForCLI(t, "govuk", "other")
	deadLetter(t, js, "govuk", "invalid_audience", 1)

	for _, args := range [][]string{
		{"dlq", "list", "--nats-url", url, "--receiver", "govk"},
		{"dlq", "replay", "--all", "--dry-run", "--nats-url", url, "--receiver", "govk"},
		{"dlq", "purge", "--yes", "--nats-url", url, "--receiver", "govk"},
	} {
		code, out, stderr := runCLI(t, "", args...)
		if code != 0 || !(strings.Contains(out, "no dead letters match") || strings.Contains(out, "0 dead letters purged")) {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, stderr)
		}
		if !strings.Contains(stderr, `no dead letters for receiver "govk"`) || !strings.Contains(stderr, `did you mean "govuk"?`) {
			t.Errorf("%v: stderr does not name the receivers that have dead letters:\n%s", args, stderr)
		}
	}
	if n := dlqCount(t, js); n != 1 {
		t.Fatalf("the dead letter is gone: %d left", n)
	}
	// A receiver that simply has none gets no note.
	code, out, stderr := runCLI(t, "", "dlq", "list", "--nats-url", url, "--receiver", "govuk", "--reason", "http_5xx")
	if code != 0 || !strings.Contains(out, "no dead letters match") || stderr != "" {
		t.Errorf("filtered by reason: exit %d\n%s%s", code, out, stderr)
	}
}
