package ssf

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestSubjectIndexExactOnA3NodeCluster runs the change protocol where
// compare-and-set and atomic batches go through Raft: a bucket with three
// replicas, two processes connected to different nodes changing
// overlapping subjects at once. The index ends equal to its records, and
// decisions equal the rule applied to every record.
func TestSubjectIndexExactOnA3NodeCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster")
	}
	urls := startTestCluster(t)
	open := func(u string) *subjectStore {
		nc, err := nats.Connect(u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		// Until the cluster has elected its JetStream leader, creating
		// buckets fails; try again for a while.
		deadline := time.Now().Add(time.Minute)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, kv, _, err := openBuckets(ctx, js, 3, time.Hour)
			cancel()
			if err == nil {
				return newSubjectStore(js, kv)
			}
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	clients := []*subjectStore{open(urls[0]), open(urls[1])}
	st := newTestStream()
	T := opaque("T")
	var pool []map[string]any
	for j := range 4 {
		u := mail(fmt.Sprintf("u%d@example.com", j))
		pool = append(pool, cx("tenant", T, "user", u), cx("user", u, "device", opaque("d")))
	}
	pool = append(pool, cx("tenant", T))
	concurrently(t, 2, func(w int) error {
		r := rand.New(rand.NewPCG(uint64(w), 11))
		for range 40 {
			s := pool[r.IntN(len(pool))]
			var next *subjectEntry
			switch r.IntN(3) {
			case 0:
				next = added(s)
			case 1:
				next = removedEntry(s)
			}
			if err := setRetrying(clients[w], st, s, next); err != nil {
				return err
			}
		}
		return nil
	})
	checkIndexExact(t, clients[0], st.ID)
	checkDecisionsFollowRecords(t, clients[1], clients[0], st, []map[string]any{cx("tenant", T), cx("device", opaque("d")), cx("user", mail("u1@example.com")), cx("tenant", T, "user", mail("u2@example.com"))})
}

// startTestCluster starts a 3-node JetStream cluster in this process and
// returns each node's client URL. (ssf_test has its own for the API
// tests; an internal test cannot share it.)
func startTestCluster(t *testing.T) []string {
	t.Helper()
	var ports []int
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	var urls []string
	for i, p := range ports {
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "ssf-subjects", Host: "127.0.0.1", Port: p},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(20 * time.Second) {
			t.Fatal("cluster node not ready")
		}
		urls = append(urls, srv.ClientURL())
	}
	return urls
}
