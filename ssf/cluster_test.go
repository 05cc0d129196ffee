package ssf_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/ssf"
	"github.com/setrelay/setrelay/worker"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startCluster starts a 3-node JetStream cluster in this process and
// returns each node's client URL.
func startCluster(t *testing.T) []string {
	t.Helper()
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	var srvs []*server.Server
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "ssf-test", Host: "127.0.0.1", Port: p},
			Routes:  routes,
		}
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		srvs = append(srvs, srv)
	}
	for _, srv := range srvs {
		if !srv.ReadyForConnections(20 * time.Second) {
			t.Fatal("cluster node not ready")
		}
		urls = append(urls, srv.ClientURL())
	}
	return urls
}

func connectJS(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// A stream created, paused, enabled and deleted through the API of one
// process reaches the dispatcher of a second process, connected to another
// node of a 3-node cluster, within 2 s each time.
func TestStreamChangesReachAnotherProcessOnA3NodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	urls := startCluster(t)
	qcfg := queue.Config{Replicas: 3}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js0 := connectJS(t, urls[0])
	if err := queue.Provision(ctx, js0, qcfg, nil); err != nil {
		t.Fatal(err)
	}
	rcv := newPushReceiver(t)
	key, _ := signer.GenerateKey(jose.ES256, "k1")
	sg, _ := signer.New(key)
	cfg := ssf.Config{
		Issuer: issuer, Queue: qcfg, PushTLS: pushTLS(rcv), AllowPrivateEndpoints: true,
		Clients: []ssf.Client{{ID: "a", TokenSHA256: ssf.HashToken(tokenA), Audience: []string{audA}}},
	}
	newServer := func(url string) *ssf.Server {
		nc, js := connectJS(t, url)
		s, err := ssf.New(ctx, cfg, ssf.Deps{NC: nc, JS: js, Signer: sg, SendKID: true, Log: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	api := newServer(urls[0])   // process 1 serves the API
	other := newServer(urls[1]) // process 2 only pushes
	_, js1 := connectJS(t, urls[1])
	d := ssf.NewDispatcher(other, worker.Deps{JS: js1, Log: zap.NewNop(), Registerer: prometheus.NewRegistry()}, nil)
	dctx, dcancel := context.WithCancel(context.Background())
	ddone := make(chan struct{})
	go func() { defer close(ddone); _ = d.Run(dctx) }()
	defer func() { dcancel(); <-ddone }()

	x := &tx{t: t, js: &testenv.JetStream{JS: js0}, key: key, srv: api}
	x.serve()

	var st map[string]any
	x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
		"events_requested": []string{caepType},
		"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events", "authorization_header": "Bearer x"},
	}, &st)
	id := st["stream_id"].(string)
	serving := func() bool { return slices.Contains(d.Serving(), id) }
	within2s := func(what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		eventually(t, 2*time.Second, what, cond)
		t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
	}
	within2s("created stream served by the other process", serving)
	x.publish(sessionRevoked("cluster-1", "a@example.com"))
	eventually(t, 10*time.Second, "the other process pushes the SET", func() bool { return rcv.count() == 1 })
	sets, _ := rcv.got()
	x.verifiedClaims(sets[0], audA)
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "paused"}, nil)
	within2s("paused stream no longer pushed by the other process", func() bool { return !serving() })
	x.must(200, "POST", "/ssf/status", tokenA, map[string]any{"stream_id": id, "status": "enabled"}, nil)
	within2s("enabled stream pushed again", serving)
	x.must(204, "DELETE", "/ssf/streams?stream_id="+id, tokenA, nil, nil)
	within2s("deleted stream no longer pushed", func() bool { return !serving() })
}
