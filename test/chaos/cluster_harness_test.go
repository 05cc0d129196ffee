package chaos

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// TestClusterHarness checks the harness the chaos run stands on: a 3-node
// cluster built from the module's nats-server starts; setrelay's R3 streams
// and consumer, provisioned by queue.Provision, survive SIGKILL of the intent
// stream's leader (publishes keep succeeding, nothing acknowledged is lost,
// Nats-Msg-Id de-duplicates the retries); the killed node rejoins and
// catches up.
func TestClusterHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node nats-server cluster; skipped with -short")
	}
	dir := t.TempDir()
	started := time.Now()
	c := startCluster(t, dir, 3)
	t.Logf("cluster ready in %v", time.Since(started).Round(time.Millisecond))
	_, js := c.connect(t)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// The streams and consumer exactly as setrelay provisions them in a
	// cluster: R3 everywhere.
	qcfg := queue.Config{Replicas: 3}
	if err := queue.Provision(ctx, js, qcfg, []string{"harness"}); err != nil {
		t.Fatalf("provision R3: %v", err)
	}
	stream, err := js.Stream(ctx, queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{queue.IntentStream, queue.DLQStream} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.Replicas; got != 3 {
			t.Fatalf("stream %s has %d replicas, want 3", name, got)
		}
	}
	cons, err := stream.Consumer(ctx, queue.ConsumerName("harness"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.Replicas; got != 3 && got != 0 {
		t.Fatalf("consumer has %d replicas, want 3 (or 0: the stream's)", got)
	}
	pub := queue.NewPublisher(js, intent.Options{})

	const perPhase = 200
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("m-%05d", i)
			if err := publishRetry(ctx, pub, id, []byte(id)); err != nil {
				t.Fatalf("publish %s: %v", id, err)
			}
		}
	}
	publish(0, perPhase)

	info, err := retry(ctx, func(c context.Context) (*jetstream.StreamInfo, error) { return stream.Info(c) })
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream is not R3: cluster info %+v", info.Cluster)
	}
	leader := c.nodeIndex(info.Cluster.Leader)
	if leader < 0 {
		t.Fatalf("stream leader %q is not one of our nodes", info.Cluster.Leader)
	}
	c.killNode(leader)

	// Publish through the leader's death: the client reconnects to a live node
	// and the stream elects a new leader among the two survivors.
	killedAt := time.Now()
	publish(perPhase, 2*perPhase)
	t.Logf("published %d messages with the stream leader killed, in %v", perPhase, time.Since(killedAt).Round(time.Millisecond))

	info, err = retry(ctx, func(c context.Context) (*jetstream.StreamInfo, error) { return stream.Info(c) })
	if err != nil {
		t.Fatalf("stream info with one node down: %v", err)
	}
	if info.State.Msgs != 2*perPhase {
		t.Fatalf("stream holds %d messages, want %d (a retried publish was stored twice, or one was lost)", info.State.Msgs, 2*perPhase)
	}
	if info.Cluster.Leader == c.nodes[leader].serverName {
		t.Fatalf("killed node %s is still the leader", info.Cluster.Leader)
	}
	// Interest retention keeps everything until the receiver's consumer acks
	// it, and the consumer (R3 too) must still answer with a node down.
	cinfo, err := retry(ctx, cons.Info)
	if err != nil {
		t.Fatalf("consumer info with one node down: %v", err)
	}
	if cinfo.NumPending != 2*perPhase {
		t.Fatalf("consumer has %d pending, want %d", cinfo.NumPending, 2*perPhase)
	}

	// Read everything back from the surviving replicas: every id once, in order.
	for i := range 2 * perPhase {
		msg, err := stream.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatalf("read message %d: %v", i+1, err)
		}
		if want := fmt.Sprintf("m-%05d", i); string(msg.Data) != want {
			t.Fatalf("message %d is %q, want %q", i+1, msg.Data, want)
		}
	}

	if err := c.restartNode(ctx, leader); err != nil {
		t.Fatal(err)
	}
	// The restarted node must rejoin the stream's group and catch up.
	for {
		info, err = retry(ctx, func(c context.Context) (*jetstream.StreamInfo, error) { return stream.Info(c) })
		if err == nil && allReplicasCurrent(info, c.nodes[leader].serverName) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not catch up after restart: last info %+v, err %v", c.nodes[leader].serverName, info.Cluster, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	t.Logf("%s rejoined and caught up", c.nodes[leader].serverName)
	if c.kills != 1 {
		t.Fatalf("kill counter %d, want 1", c.kills)
	}
}

// retry calls a JetStream info request until it answers, each attempt
// bounded. Only a group's leader answers, and a request that arrives during
// an election is dropped, not refused: one call with the test's whole
// deadline would wait out that deadline instead of the election.
func retry[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		v, err := call(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allReplicasCurrent reports whether node is in the stream's group, as leader
// or as a current, online replica.
func allReplicasCurrent(info *jetstream.StreamInfo, node string) bool {
	if info.Cluster == nil {
		return false
	}
	if info.Cluster.Leader == node {
		return true
	}
	for _, p := range info.Cluster.Replicas {
		if p.Name == node {
			return p.Current && !p.Offline
		}
	}
	return false
}

// publishRetry publishes with Nats-Msg-Id = id until JetStream acknowledges
// it, as a careful producer does: a retry after a lost ack is de-duplicated.
func publishRetry(ctx context.Context, pub *queue.Publisher, id string, data []byte) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := pub.PublishRaw(pctx, id, data, nil)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestComposeNATSConfig checks that the cluster config docker-compose.yml
// mounts into every nats container parses with the nats-server version
// setrelay is built against.
func TestComposeNATSConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server; skipped with -short")
	}
	bin := natsServerBinary(t)
	conf := filepath.Join(moduleRoot(t), "configs", "nats", "cluster.conf")
	cmd := exec.Command(bin, "-c", conf, "-t")
	// cluster.conf includes accounts.conf, whose passwords nats-server reads
	// from the environment (docker-compose.yml sets them).
	cmd.Env = append(cmd.Environ(), "NATS_SERVER_NAME=nats-1",
		"SETRELAY_NATS_RELAY_PASSWORD=a", "SETRELAY_NATS_PRODUCER_PASSWORD=b", "SETRELAY_NATS_OPERATOR_PASSWORD=c")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nats-server -t %s: %v\n%s", conf, err, out)
	}
	if !strings.Contains(string(out), "is valid") {
		t.Fatalf("nats-server -t did not report the config valid:\n%s", out)
	}
}
