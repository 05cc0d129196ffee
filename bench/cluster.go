package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/worker"
)

// cluster is n nats-servers with JetStream, routed together, running in
// this process: external to the 'setrelay run' processes under test, which
// connect to them over TCP as they would to a production cluster.
type cluster struct {
	dir     string
	servers []*server.Server
}

// startCluster starts n routed JetStream servers (n = 1 is a plain
// server) with stores under dir, and waits until JetStream answers.
func startCluster(ctx context.Context, dir string, n int) (*cluster, error) {
	c := &cluster{dir: dir}
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	for _, p := range ports {
		routes = append(routes, &url.URL{Scheme: "nats-route", Host: "127.0.0.1:" + strconv.Itoa(p)})
	}
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("bench-n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			NoSigs:     true,
			NoLog:      true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: ports[i]}
			o.Routes = routes
		}
		s, err := server.NewServer(o)
		if err != nil {
			c.shutdown()
			return nil, fmt.Errorf("bench: nats-server %d: %w", i+1, err)
		}
		s.Start()
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			c.shutdown()
			return nil, errors.New("bench: nats-server not ready after 30s")
		}
	}
	// JetStream answers once the meta group has a leader.
	nc, js, err := c.connect()
	if err != nil {
		c.shutdown()
		return nil, err
	}
	defer nc.Close()
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.AccountInfo(actx)
		cancel()
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			c.shutdown()
			return nil, fmt.Errorf("bench: JetStream cluster not ready: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) urls() string {
	var u []string
	for _, s := range c.servers {
		u = append(u, s.ClientURL())
	}
	return strings.Join(u, ",")
}

func (c *cluster) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(c.urls(), nats.MaxReconnects(-1), nats.Name("setrelay-bench"))
	if err != nil {
		return nil, nil, fmt.Errorf("bench: connect to the cluster: %w", err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("bench: %w", err)
	}
	return nc, js, nil
}

func (c *cluster) shutdown() {
	for _, s := range c.servers {
		s.Shutdown()
	}
	for _, s := range c.servers {
		s.WaitForShutdown()
	}
	c.servers = nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("bench: free port: %w", err)
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// slowReceiver answers every SET 202 after delay, as a receiver that takes
// that long per request; it counts what it accepted.
type slowReceiver struct {
	delay    time.Duration
	accepted atomic.Int64
	ln       net.Listener
	srv      *http.Server
}

func startSlowReceiver(delay time.Duration) (*slowReceiver, error) {
	r := &slowReceiver{delay: delay}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: receiver listener: %w", err)
	}
	r.ln = ln
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, q *http.Request) {
		buf := make([]byte, 4096)
		for {
			if _, err := q.Body.Read(buf); err != nil {
				break
			}
		}
		time.Sleep(r.delay)
		w.WriteHeader(http.StatusAccepted)
		r.accepted.Add(1)
	})}
	go func() { _ = r.srv.Serve(ln) }() // ends with ErrServerClosed in close
	return r, nil
}

func (r *slowReceiver) url() string { return "http://" + r.ln.Addr().String() + "/events" }
func (r *slowReceiver) close()      { _ = r.srv.Close() }

// runProcs are 'setrelay run' processes sharing one configuration file,
// each with its own ops port (for its readiness).
type runProcs struct {
	cmds     []*exec.Cmd
	opsPorts []int
	logFiles []string
}

// warnings are the warn and error lines the processes logged so far.
func (rp *runProcs) warnings() []string {
	var out []string
	for _, f := range rp.logFiles {
		data, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) {
				out = append(out, l)
			}
		}
	}
	return out
}

// logs is the end of each process's log, for an error.
func (rp *runProcs) logs() string {
	var b strings.Builder
	for _, f := range rp.logFiles {
		data, _ := os.ReadFile(f)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s\n", f, data)
	}
	return b.String()
}

// writeRunConfig writes a 'setrelay run' configuration for one receiver at
// endpoint, on the cluster at urls, with an ES256 key, and returns its path.
func writeRunConfig(dir, urls, endpoint string, replicas, concurrency int) (string, *config.Config, error) {
	key, err := signer.GenerateKey("ES256", keyID)
	if err != nil {
		return "", nil, fmt.Errorf("bench: generate key: %w", err)
	}
	pemBytes, err := key.PrivatePEM()
	if err != nil {
		return "", nil, fmt.Errorf("bench: encode key: %w", err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		return "", nil, fmt.Errorf("bench: write key: %w", err)
	}
	y := fmt.Sprintf(`issuer: %s
keys: [{id: %s, file: %s, alg: ES256}]
nats: {url: %q, replicas: %d}
ops: {listen: "${SETRELAY_BENCH_OPS}"}
log: {level: info}
worker: {concurrency: %d}
receivers:
  - name: %s
    endpoint: %s
    audience: %s
    key: %s
    subject: sub_id
    insecure_http: true
`, issuer, keyID, keyFile, urls, replicas, concurrency, receiverName, endpoint, audience, keyID)
	path := filepath.Join(dir, "setrelay.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		return "", nil, fmt.Errorf("bench: write config: %w", err)
	}
	// Each process gets its own ops address through the environment.
	cfg, err := config.Parse([]byte(y), path, func(name string) (string, bool) {
		return "127.0.0.1:0", name == "SETRELAY_BENCH_OPS"
	})
	if err != nil {
		return "", nil, fmt.Errorf("bench: run configuration: %w", err)
	}
	return path, cfg, nil
}

// provision creates the streams and consumer as 'setrelay run' would,
// once, before any process starts, so they do not race to create them; and
// the receiver state bucket, which relay.Provision does not create and
// which processes started together failed to create (each timed out after
// 10s and ran without it).
func provision(ctx context.Context, cfg *config.Config, js jetstream.JetStream) error {
	if err := relay.Provision(ctx, cfg, zap.NewNop()); err != nil {
		return fmt.Errorf("bench: provision: %w", err)
	}
	replicas := max(1, cfg.NATS.Replicas)
	_, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      worker.StateBucket,
		Description: "setrelay receiver states and probe leases, shared by every process",
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return fmt.Errorf("bench: create the receiver state bucket: %w", err)
	}
	return nil
}

// startRuns starts n 'setrelay run' processes of exe with the configuration
// at path, each with its own ops port, and waits until each is ready.
func startRuns(ctx context.Context, exe, path string, n int, logDir string) (*runProcs, error) {
	rp := &runProcs{}
	ports, err := freePorts(n)
	if err != nil {
		return nil, err
	}
	for i := range n {
		logName := filepath.Join(logDir, fmt.Sprintf("run-%d.log", i+1))
		rp.logFiles = append(rp.logFiles, logName)
		logf, err := os.Create(logName)
		if err != nil {
			rp.stop()
			return nil, fmt.Errorf("bench: %w", err)
		}
		cmd := exec.Command(exe, "run", "--config", path)
		cmd.Env = append(os.Environ(), "SETRELAY_BENCH_OPS=127.0.0.1:"+strconv.Itoa(ports[i]))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			rp.stop()
			return nil, fmt.Errorf("bench: start %s run: %w", exe, err)
		}
		logf.Close() // the child holds its own descriptor
		rp.cmds = append(rp.cmds, cmd)
		rp.opsPorts = append(rp.opsPorts, ports[i])
	}
	for i, p := range rp.opsPorts {
		err := waitReady(ctx, p)
		if err == nil {
			// Ready is not yet pulling: the pool starts after the
			// shared state bucket is open.
			err = waitLog(ctx, rp.logFiles[i], `"msg":"worker pool started"`)
		}
		if err != nil {
			rp.stop()
			err = fmt.Errorf("bench: setrelay run #%d: %w; logs:\n%s", i+1, err, rp.logs())
			rp.stop()
			return nil, err
		}
	}
	return rp, nil
}

// waitLog waits until the log file at path has a line containing s.
func waitLog(ctx context.Context, path, s string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), s) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s in its log after 60s", s)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func waitReady(ctx context.Context, port int) error {
	u := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz"
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready on %s after 60s (last: %v)", u, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cpu is the processes' user+system CPU time so far.
func (rp *runProcs) cpu() time.Duration {
	var d time.Duration
	for _, c := range rp.cmds {
		d += procCPU(c.Process.Pid)
	}
	return d
}

// rssKB is the processes' resident set sizes now.
func (rp *runProcs) rssKB() []int64 {
	var out []int64
	for _, c := range rp.cmds {
		out = append(out, pidStatusKB(strconv.Itoa(c.Process.Pid), "VmRSS"))
	}
	return out
}

// stop sends SIGTERM (a graceful 'setrelay run' shutdown) and waits, then
// kills what is still there after 30s.
func (rp *runProcs) stop() {
	for _, c := range rp.cmds {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range rp.cmds {
		done := make(chan struct{})
		go func() {
			_ = c.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	rp.cmds = nil
}

// procCPU is a process's user+system time from /proc/PID/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return time.Duration((ut + st) * float64(time.Second) / 100)
}
