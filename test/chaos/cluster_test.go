package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is one nats-server process of the cluster. Its ports are fixed at
// creation so that a restarted node rejoins at the address its peers' route
// lists name, with its JetStream store intact.
type natsNode struct {
	*proc
	serverName  string
	clientPort  int
	clusterPort int
	httpPort    int
	storeDir    string
}

func (n *natsNode) clientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// natsCluster is a JetStream cluster of nats-server processes on loopback.
type natsCluster struct {
	t     testing.TB
	nodes []*natsNode
	kills int
}

// startCluster writes a config per node into dir and starts n nodes, then
// waits until JetStream has a meta leader.
func startCluster(t testing.TB, dir string, n int) *natsCluster {
	t.Helper()
	bin := natsServerBinary(t)
	c := &natsCluster{t: t}
	ports := freePorts(t, 3*n)
	for i := range n {
		c.nodes = append(c.nodes, &natsNode{
			serverName:  fmt.Sprintf("chaos-n%d", i+1),
			clientPort:  ports[3*i],
			clusterPort: ports[3*i+1],
			httpPort:    ports[3*i+2],
			storeDir:    filepath.Join(dir, fmt.Sprintf("n%d-store", i+1)),
		})
	}
	var routes []string
	for _, nd := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", nd.clusterPort))
	}
	for _, nd := range c.nodes {
		conf := filepath.Join(dir, nd.serverName+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
http: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: chaos
  listen: 127.0.0.1:%d
  routes: [
    %s
  ]
}
`, nd.serverName, nd.clientPort, nd.httpPort, nd.storeDir, nd.clusterPort, strings.Join(routes, "\n    "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		nd.proc = newProc(nd.serverName, bin, dir, nil, "-c", conf)
	}
	for _, nd := range c.nodes {
		nd.start(t)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if err := nd.stop(t, 10*time.Second); err != nil {
				t.Logf("cluster cleanup: %v", err)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.waitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// URLs is the comma-separated client URL list, as a NATS_URL.
func (c *natsCluster) URLs() string {
	var urls []string
	for _, nd := range c.nodes {
		urls = append(urls, nd.clientURL())
	}
	return strings.Join(urls, ",")
}

// connect opens a client connection that reconnects forever, as setrelay does.
func (c *natsCluster) connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.Name("chaos-test"))
	if err != nil {
		t.Fatalf("connect to cluster: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// waitReady waits until every running node answers /healthz (which requires
// JetStream to be current with the meta leader) and a client sees JetStream.
func (c *natsCluster) waitReady(ctx context.Context) error {
	for _, nd := range c.nodes {
		if !nd.running() {
			continue
		}
		if err := waitHealthz(ctx, nd.httpPort); err != nil {
			return fmt.Errorf("%s: %w", nd.serverName, err)
		}
	}
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no JetStream meta leader: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// killNode SIGKILLs node i: no clean shutdown, no leadership hand-off.
func (c *natsCluster) killNode(i int) {
	c.t.Helper()
	c.nodes[i].kill(c.t)
	c.kills++
}

// restartNode starts node i again on its ports and store, and waits until it
// is healthy (caught up with the meta leader).
func (c *natsCluster) restartNode(ctx context.Context, i int) error {
	c.t.Helper()
	nd := c.nodes[i]
	nd.start(c.t)
	if err := waitHealthz(ctx, nd.httpPort); err != nil {
		return fmt.Errorf("%s after restart: %w", nd.serverName, err)
	}
	return nil
}

// nodeIndex returns the index of the node called serverName, or -1.
func (c *natsCluster) nodeIndex(serverName string) int {
	for i, nd := range c.nodes {
		if nd.serverName == serverName {
			return i
		}
	}
	return -1
}

// logFiles lists every node's log files.
func (c *natsCluster) logFiles() []string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, nd.logFiles()...)
	}
	return out
}

func waitHealthz(ctx context.Context, port int) error {
	return waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
}

// freePorts reserves n distinct loopback ports by listening on port 0, then
// releases them for the servers to bind. Holding them all until the end
// keeps the kernel from handing the same port out twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
