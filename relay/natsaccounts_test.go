package relay

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	neturl "net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/queue"
)

// shippedAccounts is the accounts and permissions file the README tells
// operators to deploy; docker-compose's cluster.conf and embedded.conf
// include it.
const shippedAccounts = "../configs/nats/accounts.conf"

// natsPasswords are the passwords accounts.conf reads from nats-server's
// environment, one per user.
var natsPasswords = map[string]string{
	"relay":    "relay-test-password",
	"operator": "operator-test-password",
	"producer": "producer-test-password",
}

// setNATSPasswords puts the passwords where nats-server's config parser
// looks for $SETRELAY_NATS_<USER>_PASSWORD. It uses t.Setenv, so callers
// cannot run in parallel.
func setNATSPasswords(t *testing.T) {
	for user, pw := range natsPasswords {
		t.Setenv("SETRELAY_NATS_"+strings.ToUpper(user)+"_PASSWORD", pw)
	}
}

// startShippedNATS starts a real nats-server whose accounts, users and
// permissions are exactly those of the shipped accounts.conf; only the
// port and the store directory are the test's.
func startShippedNATS(t *testing.T) *server.Server {
	t.Helper()
	setNATSPasswords(t)
	opts, err := server.ProcessConfigFile(shippedAccounts)
	if err != nil {
		t.Fatalf("%s does not load: %v", shippedAccounts, err)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// permErrors collects the permission violations the server reports on one
// connection, so a test can tell "denied" from "nothing answered".
type permErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *permErrors) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, err.Error())
}

// denied waits until the server has reported a permission violation for
// the operation ("Publish" or "Subscription") on subject.
func (p *permErrors) denied(t *testing.T, op, subject string) {
	t.Helper()
	want := strings.ToLower(fmt.Sprintf("permissions violation for %s to %q", op, subject))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, e := range p.errs {
			if strings.Contains(strings.ToLower(e), want) {
				p.mu.Unlock()
				return
			}
		}
		p.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t.Errorf("no %s reported; the connection's errors: %q", want, p.errs)
}

func connectAs(t *testing.T, url, user string, perr *permErrors) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts := []nats.Option{nats.UserInfo(user, natsPasswords[user])}
	if perr != nil {
		opts = append(opts, nats.ErrorHandler(perr.handler))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// TestShippedNATSPermissions runs a relay, a producer and an operator
// against a nats-server configured from configs/nats/accounts.conf. The
// relay provisions, delivers, dead-letters and pauses a failing receiver;
// the operator reads and purges dead letters; the producer publishes
// intents and can do nothing else: no replays, no dead letters, no JetStream
// API. Every denial is checked twice: the operation fails, and the server
// reports a permission violation for exactly that subject (or, for the
// replay, the stream is shown not to have stored it).
func TestShippedNATSPermissions(t *testing.T) {
	srv := startShippedNATS(t)
	url := srv.ClientURL()

	// Three receivers: one accepts, one refuses (dead letters), one is down
	// (the worker pauses its consumer, a JetStream API call of its own).
	handler := func(status int, body string, got chan<- struct{}) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
			select {
			case got <- struct{}{}:
			default:
			}
		}
	}
	delivered := make(chan struct{}, 10)
	good := httptest.NewServer(handler(http.StatusAccepted, "", delivered))
	defer good.Close()
	bad := httptest.NewServer(handler(http.StatusBadRequest, `{"err":"invalid_request","description":"no"}`, nil))
	defer bad.Close()
	down := httptest.NewServer(handler(http.StatusServiceUnavailable, "", nil))
	defer down.Close()

	dir := t.TempDir()
	keyFile, _ := testenv.WriteKey(t, dir, jose.ES256, "k1")
	y := fmt.Sprintf(`
issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: {url: %q, user: relay, password: "${RELAY_PASSWORD}"}
ops: {listen: "127.0.0.1:0"}
worker: {concurrency: 4, grace_period: 2s}
receivers:
  - {name: good, endpoint: %s, audience: https://rcv.example/, key: k1, insecure_http: true, rate_limit: 50, max_in_flight: 4}
  - {name: bad, endpoint: %s, audience: https://rcv.example/, key: k1, insecure_http: true}
  - name: down
    endpoint: %s
    audience: https://rcv.example/
    key: k1
    insecure_http: true
    retry: {initial: 100ms, max: 200ms}
    pause: {threshold: 1, initial: 1m, max: 1m}
`, keyFile, url, good.URL, bad.URL, down.URL)
	cfg, err := config.Parse([]byte(y), filepath.Join(dir, "config.yaml"), func(k string) (string, bool) {
		return natsPasswords["relay"], k == "RELAY_PASSWORD"
	})
	if err != nil {
		t.Fatal(err)
	}

	// The relay logs the NATS client's async errors (permission
	// violations among them) as warnings; it must log none.
	core, logs := observer.New(zapcore.WarnLevel)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("relay user cannot start the relay: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay Run: %v", err)
		}
	}()

	// The producer publishes an intent through setrelay's own publisher,
	// and JetStream's ack comes back across the account import.
	pperr := &permErrors{}
	pnc, pjs := connectAs(t, url, "producer", pperr)
	in, err := intent.Decode([]byte(`{"id":"perm-1","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	ack, err := queue.NewPublisher(pjs, intent.Options{}).Publish(pctx, in)
	pcancel()
	if err != nil {
		t.Fatalf("producer cannot publish an intent: %v", err)
	}
	if ack.Sequence == 0 || ack.Duplicate {
		t.Fatalf("intent publish ack %+v, want a new stored message", ack)
	}
	// Publish used the intent's slot subject (per-subject ordering);
	// producers built before it publish on the bare subject, which must
	// still be allowed and stored.
	if want := queue.IntentSubjectFor(in.Subject); !strings.HasPrefix(want, queue.IntentSubject+".") {
		t.Fatalf("slot subject %q", want)
	}
	pctx, pcancel = context.WithTimeout(ctx, 10*time.Second)
	bare, err := pjs.Publish(pctx, queue.IntentSubject, []byte(`{"id":"perm-bare","type":"risc.account-disabled","receivers":["good"],"subject":{"format":"email","email":"b@example.com"}}`),
		jetstream.WithMsgID("perm-bare"))
	pcancel()
	if err != nil || bare.Sequence <= ack.Sequence {
		t.Fatalf("producer cannot publish on the bare %s: ack %+v, %v", queue.IntentSubject, bare, err)
	}

	// The relay user did its job: delivered to good, dead-lettered for bad,
	// paused down.
	select {
	case <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay user did not deliver the intent")
	}
	_, rjs := connectAs(t, url, "relay", nil)
	waitUntil(t, 20*time.Second, "a dead letter for receiver bad", func() bool {
		s, err := rjs.Stream(ctx, queue.DLQStream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		return err == nil && info.State.Msgs == 1
	})
	waitUntil(t, 20*time.Second, "the down receiver's consumer paused", func() bool {
		c, err := rjs.Consumer(ctx, queue.IntentStream, queue.ConsumerName("down"))
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.Paused
	})

	// The producer cannot publish a replay. The permission denies it, and
	// the intents stream (seen by the relay) stores nothing more: its last
	// sequence counts every message stored, even one Interest retention
	// removes at once.
	is, err := rjs.Stream(ctx, queue.IntentStream)
	if err != nil {
		t.Fatal(err)
	}
	before, err := is.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replay := queue.ReplaySubject("good")
	if err := pnc.Publish(replay, []byte(`{"id":"forged","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`)); err != nil {
		t.Fatal(err)
	}
	pperr.denied(t, "Publish", replay)
	jctx, jcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = pjs.Publish(jctx, replay, []byte(`{}`))
	jcancel()
	if err == nil {
		t.Errorf("producer's JetStream publish to %s was acknowledged", replay)
	}
	after, err := is.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.LastSeq != before.State.LastSeq {
		t.Errorf("intents stream last sequence %d -> %d after the producer's replay attempts", before.State.LastSeq, after.State.LastSeq)
	}

	// The producer cannot see dead letters: no stream info, no consumer, no
	// direct or stored-message get, no core subscription to the subject.
	short := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, time.Second) }
	c1, x1 := short()
	if _, err := pjs.Stream(c1, queue.DLQStream); err == nil {
		t.Error("producer got stream info of " + queue.DLQStream)
	}
	x1()
	pperr.denied(t, "Publish", "$JS.API.STREAM.INFO."+queue.DLQStream)
	c2, x2 := short()
	if _, err := pjs.CreateOrUpdateConsumer(c2, queue.DLQStream, jetstream.ConsumerConfig{Name: "peek", AckPolicy: jetstream.AckNonePolicy}); err == nil {
		t.Error("producer created a consumer on " + queue.DLQStream)
	}
	x2()
	pperr.denied(t, "Publish", "$JS.API.CONSUMER.CREATE."+queue.DLQStream+".peek")
	for _, subj := range []string{"$JS.API.DIRECT.GET." + queue.DLQStream, "$JS.API.STREAM.MSG.GET." + queue.DLQStream} {
		if msg, err := pnc.Request(subj, []byte(`{"seq":1}`), time.Second); err == nil {
			t.Errorf("producer's %s answered: %q", subj, msg.Data)
		}
		pperr.denied(t, "Publish", subj)
	}
	sub, err := pnc.SubscribeSync("setrelay.dlq.>")
	if err != nil {
		t.Fatal(err)
	}
	pperr.denied(t, "Subscription", "setrelay.dlq.>")
	if msg, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Errorf("producer received a dead letter on %s", msg.Subject)
	}

	// The operator reads and purges dead letters with setrelay's own DLQ
	// code, and cannot publish replays or intents.
	operr := &permErrors{}
	onc, ojs := connectAs(t, url, "operator", operr)
	dlq := queue.NewDLQ(ojs)
	dls, err := dlq.List(ctx, queue.Filter{})
	if err != nil || len(dls) != 1 || dls[0].Receiver != "bad" || dls[0].IntentID != "perm-1" {
		t.Fatalf("operator's dlq list: %+v, %v", dls, err)
	}
	if _, err := dlq.Get(ctx, dls[0].Seq); err != nil {
		t.Errorf("operator's dlq show: %v", err)
	}
	if err := onc.Publish(replay, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	operr.denied(t, "Publish", replay)

	// The relay's credentials replay a dead letter (dlq replay).
	res, err := queue.NewDLQ(rjs).Replay(ctx, dls[0].Seq)
	if err != nil {
		t.Fatalf("relay user's dlq replay: %v", err)
	}
	if res.Receiver != "bad" {
		t.Errorf("replay result %+v", res)
	}
	// The replay fails again (the receiver still refuses) and is
	// dead-lettered again, which the operator then purges.
	waitUntil(t, 20*time.Second, "the replay dead-lettered again", func() bool {
		dls, err := dlq.List(ctx, queue.Filter{})
		return err == nil && len(dls) == 1
	})
	// It was taken as a real replay (its MAC verified with the key the
	// relay user provisioned), not refused as invalid_replay.
	if again, err := dlq.List(ctx, queue.Filter{}); err != nil || again[0].Reason == "invalid_replay" || again[0].ReplayOf != res.DLQSeq {
		t.Errorf("replay dead-lettered again as %+v (%v); want the receiver's reason, linked to %d", again, err, res.DLQSeq)
	}
	// Neither the operator nor a producer can read the replay key, so
	// neither can forge a replay.
	for who, js := range map[string]jetstream.JetStream{"operator": ojs, "producer": pjs} {
		c, x := short()
		if _, err := queue.NewReplayKeys(js).Sign(c, "good", 1, []byte("{}")); err == nil {
			t.Errorf("%s read the replay key", who)
		}
		x()
	}
	n, err := dlq.Purge(ctx, queue.Filter{})
	if err != nil || n != 1 {
		t.Fatalf("operator's dlq purge: %d, %v", n, err)
	}

	for _, e := range logs.All() {
		if b, _ := json.Marshal(e.ContextMap()); bytes.Contains(bytes.ToLower(append([]byte(e.Message), b...)), []byte("permission")) {
			t.Errorf("relay logged a permission problem: %s %s", e.Message, b)
		}
	}
}

// writeServerCert writes a CA and a server certificate for 127.0.0.1 into
// dir and returns the paths of the CA, the certificate and its key.
func writeServerCert(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name string, block *pem.Block) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, srvKey := newKey(), newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", &pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		write("server.pem", &pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		write("server-key.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// TestEmbeddedExposedWithShippedConfig runs the relay's embedded server on
// all interfaces with configs/nats/embedded.conf (copied with only the
// certificate paths changed, so accounts.conf's permissions are the
// shipped ones): the relay connects in-process as its own user, a producer
// publishes over TLS with its credentials and the SET is delivered, and
// clients without TLS or without credentials are turned away.
func TestEmbeddedExposedWithShippedConfig(t *testing.T) {
	setNATSPasswords(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := writeServerCert(t, dir)
	conf, err := os.ReadFile("../configs/nats/embedded.conf")
	if err != nil {
		t.Fatal(err)
	}
	confs := strings.NewReplacer("/etc/setrelay/nats/server.pem", certFile, "/etc/setrelay/nats/server-key.pem", keyFile).Replace(string(conf))
	if confs == string(conf) {
		t.Fatal("embedded.conf no longer names /etc/setrelay/nats/server.pem; update this test")
	}
	accounts, err := os.ReadFile(shippedAccounts)
	if err != nil {
		t.Fatal(err)
	}
	embedded := filepath.Join(dir, "embedded.conf")
	if err := os.WriteFile(embedded, []byte(confs), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), accounts, 0o600); err != nil {
		t.Fatal(err)
	}

	delivered := make(chan struct{}, 1)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		select {
		case delivered <- struct{}{}:
		default:
		}
	}))
	defer rcv.Close()
	keyPath, _ := testenv.WriteKey(t, dir, jose.ES256, "k1")
	y := fmt.Sprintf(`
issuer: https://issuer.example/
keys: [{id: k1, file: %s, alg: ES256}]
nats: {listen: "0.0.0.0:-1", store_dir: %s, server_config: %s, user: relay, password: "${RELAY_PASSWORD}"}
ops: {listen: "127.0.0.1:0"}
worker: {concurrency: 2, grace_period: 2s}
receivers:
  - {name: local, endpoint: %s, audience: https://rcv.example/, key: k1, insecure_http: true}
`, keyPath, filepath.Join(dir, "js"), embedded, rcv.URL)
	cfg, err := config.Parse([]byte(y), filepath.Join(dir, "config.yaml"), func(k string) (string, bool) {
		return natsPasswords["relay"], k == "RELAY_PASSWORD"
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("relay with the shipped embedded.conf: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay Run: %v", err)
		}
	}()

	u, err := neturl.Parse(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + u.Port()
	nc, err := nats.Connect("tls://"+addr, nats.RootCAs(caFile), nats.UserInfo("producer", natsPasswords["producer"]))
	if err != nil {
		t.Fatalf("producer over TLS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	in, err := intent.Decode([]byte(`{"id":"tls-1","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if _, err := queue.NewPublisher(js, intent.Options{}).Publish(pctx, in); err != nil {
		t.Fatalf("producer publish: %v", err)
	}
	select {
	case <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatal("intent not delivered")
	}
	// The backfill's batch publisher, with many acks in flight at once
	// across the import, works with the producer's permissions too.
	bp, err := queue.NewBatchPublisher(nc, queue.BatchOptions{Window: 16})
	if err != nil {
		t.Fatal(err)
	}
	const batch = 50
	for i := range batch {
		in, err := intent.Decode(fmt.Appendf(nil, `{"id":"tls-batch-%d","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`, i), intent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := bp.Publish(pctx, in, int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := bp.Close(pctx); err != nil {
		t.Fatal(err)
	}
	if st := bp.Stats(); st.Stored != batch || st.Failed != 0 {
		t.Errorf("batch publish as producer: %+v, want %d stored", st, batch)
	}

	// Turned away: no credentials; right credentials without TLS.
	if c, err := nats.Connect("tls://"+addr, nats.RootCAs(caFile), nats.MaxReconnects(0)); err == nil {
		c.Close()
		t.Error("a client without credentials connected")
	}
	// nats.go upgrades to TLS whenever the server asks, so speak the
	// protocol by hand, as a client without TLS would.
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	info, err := br.ReadString('\n')
	if err != nil || !strings.Contains(info, `"tls_required":true`) {
		t.Errorf("server INFO %q (%v) does not require TLS", info, err)
	}
	fmt.Fprintf(conn, "CONNECT {\"user\":\"producer\",\"pass\":%q,\"verbose\":false}\r\nPING\r\n", natsPasswords["producer"])
	line, _ := br.ReadString('\n')
	if strings.HasPrefix(line, "PONG") {
		t.Error("a client without TLS was accepted")
	}
}

// TestEmbeddedServerConfigNeedsRelayCredentials checks that a relay whose
// embedded server has users (nats.server_config) but which has none of its
// own is told, as a configuration problem, which settings to add.
func TestEmbeddedServerConfigNeedsRelayCredentials(t *testing.T) {
	setNATSPasswords(t)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/"})
	cfg := rc.Config
	cfg.NATS.ServerConfig = shippedAccounts
	_, err := Start(context.Background(), cfg, zap.NewNop(), prometheus.NewRegistry())
	var ce *config.Error
	if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Path != "nats.user" ||
		!strings.Contains(ce.Problems[0].Message, "nats.password") {
		t.Fatalf("Start without relay credentials: %v, want a config problem at nats.user", err)
	}

	cfg.NATS.ServerConfig = filepath.Join(t.TempDir(), "missing.conf")
	_, err = Start(context.Background(), cfg, zap.NewNop(), prometheus.NewRegistry())
	if !errors.As(err, &ce) || ce.Problems[0].Path != "nats.server_config" {
		t.Fatalf("Start with a missing server_config: %v, want a config problem at nats.server_config", err)
	}
}

// TestShippedClusterConfig runs three nats-servers from
// configs/nats/cluster.conf, the file docker-compose mounts (only the
// addresses, ports and store directories are the test's), and checks that
// the relay user provisions the replicated streams and a producer's intent
// reaches them across the account import, from another node, while the
// producer still cannot reach the dead letters.
func TestShippedClusterConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster; skipped with -short")
	}
	setNATSPasswords(t)
	ports := make([]int, 3)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	var urls []string
	for i := range ports {
		t.Setenv("NATS_SERVER_NAME", fmt.Sprintf("nats-%d", i+1))
		opts, err := server.ProcessConfigFile("../configs/nats/cluster.conf")
		if err != nil {
			t.Fatalf("cluster.conf does not load: %v", err)
		}
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
		opts.StoreDir = t.TempDir()
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", ports[i]
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		opts.NoSigs, opts.NoLog = true, true
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
		if !srv.ReadyForConnections(20 * time.Second) {
			t.Fatalf("nats-%d not ready", i+1)
		}
		urls = append(urls, srv.ClientURL())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, rjs := connectAs(t, urls[0], "relay", nil)
	if err := queue.Provision(ctx, rjs, queue.Config{Replicas: 3}, []string{"r"}); err != nil {
		t.Fatalf("relay user provisions R3 streams: %v", err)
	}

	pperr := &permErrors{}
	_, pjs := connectAs(t, urls[2], "producer", pperr)
	in, err := intent.Decode([]byte(`{"id":"cluster-1","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`), intent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ack queue.PubAck
	waitUntil(t, 30*time.Second, "the producer's publish to be acknowledged", func() bool {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		defer pcancel()
		ack, err = queue.NewPublisher(pjs, intent.Options{}).Publish(pctx, in)
		return err == nil
	})
	if ack.Sequence == 0 {
		t.Fatalf("publish ack %+v", ack)
	}
	if n := testenv.StreamMsgs(t, rjs, queue.IntentStream); n != 1 {
		t.Errorf("intents stream holds %d messages, want the producer's 1", n)
	}

	c, x := context.WithTimeout(ctx, time.Second)
	defer x()
	if _, err := pjs.Stream(c, queue.DLQStream); err == nil {
		t.Error("producer got stream info of " + queue.DLQStream)
	}
	pperr.denied(t, "Publish", "$JS.API.STREAM.INFO."+queue.DLQStream)
}
