package ssf

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

// TestSubjectStoreScales stores N subjects for one stream (10,000 by
// default; SETRELAY_SSF_SUBJECTS=1000000 for the million) and
// checks that deciding an event costs a few key look-ups whatever N is:
// nothing is listed or loaded.
func TestSubjectStoreScales(t *testing.T) {
	n := 10000
	if v := os.Getenv("SETRELAY_SSF_SUBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := queue.StartEmbedded(queue.Config{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	_, subjects, _, err := openBuckets(ctx, js, 1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ss := &subjectStore{kv: subjects}
	st := &Stream{ID: "0123456789abcdef0123456789abcdef", HasSubjects: true}
	start := time.Now()
	for i := range n {
		subj := map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", i)}
		b, _ := json.Marshal(subjectEntry{Subject: []byte(`{}`), Verified: true, State: subjectAdded})
		if _, err := js.PublishAsync("$KV."+SubjectsBucket+"."+subjectKey(st.ID, normalise(subj)), b); err != nil {
			t.Fatal(err)
		}
		if i%2000 == 1999 {
			<-js.PublishAsyncComplete() // keep the window bounded
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("storing subjects timed out")
	}
	t.Logf("stored %d subjects in %s", n, time.Since(start).Round(time.Millisecond))

	const probes = 500
	start = time.Now()
	for i := range probes {
		in := map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", (i*7919)%n)}
		ok, err := ss.wants(ctx, st, DefaultSubjectsNone, in)
		if err != nil || !ok {
			t.Fatalf("added subject %v not matched: %v", in, err)
		}
		out := map[string]any{"format": "email", "email": fmt.Sprintf("stranger%d@example.com", i)}
		if ok, err := ss.wants(ctx, st, DefaultSubjectsNone, out); err != nil || ok {
			t.Fatalf("subject never added matched: %v", err)
		}
	}
	t.Logf("%d subjects: %s per decision", n, (time.Since(start) / (2 * probes)).Round(time.Microsecond))
}
