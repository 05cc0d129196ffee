package testenv

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

func TestStartJetStreamProvisions(t *testing.T) {
	j := StartJetStream(t, queue.Config{}, "r1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{queue.IntentStream, queue.DLQStream} {
		if _, err := j.JS.Stream(ctx, name); err != nil {
			t.Errorf("stream %s: %v", name, err)
		}
	}
	if _, err := j.JS.Consumer(ctx, queue.IntentStream, queue.ConsumerName("r1")); err != nil {
		t.Errorf("consumer for r1: %v", err)
	}
	if j.URL() == "" || !j.Conn.IsConnected() {
		t.Errorf("not connected to %q", j.URL())
	}
	if n := StreamMsgs(t, j.JS, queue.IntentStream); n != 0 {
		t.Fatalf("a new intents stream holds %d messages", n)
	}
	if _, err := j.JS.Publish(ctx, queue.IntentSubject, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if n := StreamMsgs(t, j.JS, queue.IntentStream); n != 1 {
		t.Errorf("after one publish the intents stream holds %d messages, want 1", n)
	}
}

func TestWriteRelayConfigLoads(t *testing.T) {
	rc := WriteRelayConfig(t, RelayOptions{Endpoint: "http://127.0.0.1:1/events", Events: []string{"risc.account-disabled"}})
	loaded, err := config.Load(rc.File)
	if err != nil {
		t.Fatalf("the written file does not load: %v", err)
	}
	r := loaded.Receivers[0]
	if r.Name != "local" || r.Endpoint != "http://127.0.0.1:1/events" || !slices.Equal(r.Events, []string{"risc.account-disabled"}) {
		t.Errorf("receiver = %+v", r)
	}
	if loaded.Worker.Concurrency != 4 || loaded.Worker.GracePeriod != 5*time.Second {
		t.Errorf("worker = %+v, want the defaults 4 and 5s", loaded.Worker)
	}
	k, err := signer.LoadKey(loaded.Keys[0].File, "k1", jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := k.PublicPEM()
	want, _ := rc.Key.PublicPEM()
	if len(want) == 0 || string(got) != string(want) {
		t.Error("RelayConfig.Key is not the key in the file")
	}
	if fi, err := os.Stat(loaded.Keys[0].File); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v, %v", fi, err)
	}
}
