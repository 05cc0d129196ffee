package backfill_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/backfill"
	"github.com/setrelay/setrelay/queue"
)

// A backfill from any io.Reader: valid lines are published, invalid ones
// land in the rejects file with their line numbers, and the checkpoint lets
// an interrupted run resume.
func ExampleRun() {
	dir, _ := os.MkdirTemp("", "backfill-example")
	defer os.RemoveAll(dir)
	// An embedded JetStream stands in for the real one.
	srv, err := queue.StartEmbedded(queue.Config{Listen: "127.0.0.1:-1", StoreDir: dir}, zap.NewNop())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := queue.Provision(ctx, js, queue.Config{}, []string{"receiver-a"}); err != nil {
		fmt.Println(err)
		return
	}

	input := strings.NewReader(`{"id":"e-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}
{"id":"e-2","type":"caep.session-revoked"}
{"id":"e-3","type":"risc.account-disabled","subject":{"format":"email","email":"b@example.com"}}
`)
	sum, err := backfill.Run(ctx, nc, backfill.Source{R: input, Name: "export.ndjson", Size: -1}, backfill.Options{
		Checkpoint: filepath.Join(dir, "export.checkpoint"),
		Rejects:    filepath.Join(dir, "export.rejects.ndjson"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("published %d, invalid %d, checkpoint at line %d\n", sum.Published, sum.Invalid, sum.Checkpoint.Line)
	rejects, _ := os.ReadFile(filepath.Join(dir, "export.rejects.ndjson"))
	fmt.Print(string(rejects))
	// Output:
	// published 2, invalid 1, checkpoint at line 3
	// {"line":2,"id":"e-2","errors":["subject: required for this event type: a subject identifier such as {\"format\": \"email\", \"email\": \"user@example.com\"}"]}
}
