package backfill

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// startJS starts an embedded JetStream with the streams and one consumer per
// receiver (Interest retention keeps only what some consumer wants, so tests
// that count stored intents provision one).
func startJS(tb testing.TB, receivers ...string) (*server.Server, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return startJSWith(tb, queue.Config{}, receivers...)
}

// startJSWith is startJS with stream limits from cfg.
func startJSWith(tb testing.TB, cfg queue.Config, receivers ...string) (*server.Server, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	j := testenv.StartJetStream(tb, cfg, receivers...)
	return j.Server, j.Conn, j.JS
}

// validLine is intent number i as one NDJSON line.
func validLine(i int) string {
	return fmt.Sprintf(`{"id":"bf-%07d","type":"risc.account-disabled","subject":{"format":"email","email":"user%d@example.com"}}`, i, i)
}

// invalidLines are the kinds of bad line a real export contains; the test
// files cycle through them.
var invalidLines = []string{
	`{"id":"bad-json",`,
	`{"id":"no-type","subject":{"format":"email","email":"a@example.com"}}`,
	`{"id":"bad-email","type":"risc.account-disabled","subject":{"format":"email","email":"not an email"}}`,
	`{"id":"unknown-member","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"},"colour":"red"}`,
	`[1,2,3]`,
	`{"id":"huge","type":"risc.account-disabled","pad":"` + strings.Repeat("x", intent.MaxSize+10) + `"}`,
}

// genFile writes n lines, every hundredth one (from line 50) invalid, and
// returns the path, the invalid line numbers and the valid count.
func genFile(tb testing.TB, n int) (path string, invalid map[int64]bool, valid int) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "intents.ndjson")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(f)
	invalid = map[int64]bool{}
	for i := 1; i <= n; i++ {
		if i%100 == 50 {
			invalid[int64(i)] = true
			fmt.Fprintln(w, invalidLines[(i/100)%len(invalidLines)])
			continue
		}
		valid++
		fmt.Fprintln(w, validLine(i))
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path, invalid, valid
}

// fileSource opens path as a Source.
func fileSource(tb testing.TB, path string) Source {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	return Source{R: f, Name: path, Size: fi.Size()}
}

// storedCount is how many messages the intents stream holds.
func storedCount(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	return testenv.StreamMsgs(tb, js, queue.IntentStream)
}

// storedIDs reads every stored message's Nats-Msg-Id and counts each.
func storedIDs(tb testing.TB, js jetstream.JetStream) map[string]int {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, queue.IntentStream)
	if err != nil {
		tb.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	want := storedCount(tb, js)
	ids := map[string]int{}
	for got := uint64(0); got < want; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			ids[m.Headers().Get(jetstream.MsgIDHeader)]++
			n++
		}
		if n == 0 {
			tb.Fatalf("read %d of %d stored messages", got, want)
		}
		got += uint64(n)
	}
	return ids
}

// readRejects parses a rejects file.
func readRejects(tb testing.TB, path string) []Reject {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []Reject
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rj Reject
		if err := jsonUnmarshal(sc.Bytes(), &rj); err != nil {
			tb.Fatalf("rejects line %q: %v", sc.Text(), err)
		}
		out = append(out, rj)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}
