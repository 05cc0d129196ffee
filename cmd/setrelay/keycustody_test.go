package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/worker"
)

// custodyIntents is how many intents the end-to-end key custody runs
// publish; SETRELAY_CUSTODY_INTENTS raises it for a soak.
func custodyIntents() int {
	n := 1000
	if s := os.Getenv("SETRELAY_CUSTODY_INTENTS"); s != "" {
		fmt.Sscan(s, &n)
	}
	return n
}

// devReceiver is the development receiver (package receiver) verifying
// every SET against the relay's own /jwks.json, with every accepted body
// kept so the test can verify it again with jwx.
type devReceiver struct {
	name string
	srv  *httptest.Server
	rcv  atomic.Pointer[receiver.Receiver]
	mu   sync.Mutex
	sets [][]byte
}

func newDevReceiver(t *testing.T, name string) *devReceiver {
	d := &devReceiver{name: name}
	d.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := d.rcv.Load()
		if rc == nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		rc.Handler().ServeHTTP(rec, r)
		if rec.Code == http.StatusAccepted {
			d.mu.Lock()
			d.sets = append(d.sets, body)
			d.mu.Unlock()
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	t.Cleanup(d.srv.Close)
	return d
}

// start points the receiver at the relay's JWKS.
func (d *devReceiver) start(t *testing.T, jwksURL string) {
	rc, err := receiver.New(receiver.Config{NoAuth: true, Issuer: "https://issuer.example/", Audience: "https://" + d.name + ".example/",
		// A short refresh stands in for the hours a real receiver may
		// cache a JWKS; the rotation test waits one out between steps.
		JWKSURL: jwksURL, JWKSRefresh: 200 * time.Millisecond, Quiet: true}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Close)
	d.rcv.Store(rc)
}

func (d *devReceiver) accepted() int64 {
	if rc := d.rcv.Load(); rc != nil {
		return rc.Stats().Accepted
	}
	return 0
}

// custodyConfig writes a relay configuration with the given keys entries
// (YAML flow mappings) and one receiver per (name, key id) pair.
func custodyConfig(t *testing.T, dir string, opsListen string, keys []string, receivers map[string]*devReceiver, keyOf map[string]string) string {
	t.Helper()
	var rs strings.Builder
	for name, d := range receivers {
		fmt.Fprintf(&rs, `  - name: %s
    endpoint: %s/events
    audience: https://%s.example/
    key: %s
    insecure_http: true
    events: [risc.account-disabled]
    retry: {initial: 100ms, max: 500ms}
`, name, d.srv.URL, name, keyOf[name])
	}
	y := fmt.Sprintf(`issuer: https://issuer.example/
keys:
%s
nats: {listen: "127.0.0.1:-1", store_dir: %s}
ops: {listen: %q}
worker: {concurrency: 16, grace_period: 5s}
log: {level: warn}
receivers:
%s`, "  - "+strings.Join(keys, "\n  - "), filepath.Join(dir, "js"), opsListen, rs.String())
	path := filepath.Join(dir, fmt.Sprintf("config-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// snippet extracts the keys[] entry `keys generate` printed.
var snippetRE = regexp.MustCompile(`(?m)^configuration: keys: \[(.*)\]$`)

func generatedSnippet(t *testing.T, out string) string {
	t.Helper()
	m := snippetRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("keys generate printed no configuration snippet:\n%s", out)
	}
	return m[1]
}

// relayRun is one `setrelay run` as relay.Run assembles it, in-process.
type relayRun struct {
	svc  *relay.Service
	reg  *prometheus.Registry
	done chan error
	stop context.CancelFunc
}

func startRelay(t *testing.T, file string, receivers ...*devReceiver) *relayRun {
	t.Helper()
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := relay.Start(ctx, cfg, zap.NewNop(), reg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	jwks := "http://" + svc.OpsAddr().String() + "/jwks.json"
	for _, d := range receivers {
		if d.rcv.Load() == nil {
			d.start(t, jwks)
		}
	}
	r := &relayRun{svc: svc, reg: reg, done: make(chan error, 1), stop: cancel}
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(func() { r.shutdown(t) })
	return r
}

func (r *relayRun) shutdown(t *testing.T) {
	if r.stop == nil {
		return
	}
	r.stop()
	r.stop = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("run did not stop")
	}
}

// publish sends n account-disabled intents with ids prefix-0 ...
func (r *relayRun) publish(t *testing.T, prefix string, n int) {
	t.Helper()
	pub := queue.NewPublisher(r.svc.JetStream(), intent.Options{})
	for i := range n {
		in, err := intent.Decode(fmt.Appendf(nil, `{"id":"%s-%d","type":"risc.account-disabled","subject":{"format":"email","email":"u%d@example.com"}}`, prefix, i, i), intent.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pub.Publish(context.Background(), in); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *relayRun) deadLetters(t *testing.T) uint64 {
	return testenv.StreamMsgs(t, r.svc.JetStream(), queue.DLQStream)
}

// waitAccepted waits until every receiver accepted want unique SETs.
func waitAccepted(t *testing.T, want int64, timeout time.Duration, receivers ...*devReceiver) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, d := range receivers {
		for d.accepted() < want {
			if time.Now().After(deadline) {
				t.Fatalf("receiver %s accepted %d of %d SETs; stats %+v", d.name, d.accepted(), want, d.rcv.Load().Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// verifyWithJWX checks every SET a receiver accepted against the relay's
// JWKS with jwx, a JOSE library independent of the go-jose signer and of
// the receiver's verifier, and that none was rejected.
func verifyWithJWX(t *testing.T, jwksJSON []byte, wantKID string, d *devReceiver) {
	t.Helper()
	set, err := jwk.Parse(jwksJSON)
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.sets {
		msg, err := jws.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		if kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID(); wantKID != "" && kid != wantKID {
			t.Fatalf("SET kid %q, want %q", kid, wantKID)
		}
		if _, err := jws.Verify(s, jws.WithKeySet(set, jws.WithRequireKid(true))); err != nil {
			t.Fatalf("jwx does not verify a SET received by %s: %v", d.name, err)
		}
	}
	if st := d.rcv.Load().Stats(); len(st.Rejections) != 0 || len(st.Violations) != 0 {
		t.Fatalf("receiver %s rejected SETs: %+v", d.name, st)
	}
}

func httpBody(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return b
}

// checkKeyCommands runs keys jwks, keys pem and sign against the
// configuration and checks they agree with what run serves.
func checkKeyCommands(t *testing.T, cfgFile string, served []byte, keyIDs ...string) {
	t.Helper()
	code, out, stderr := runCLI(t, "", "keys", "jwks", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("keys jwks --config: %d %s", code, stderr)
	}
	var cli, ops struct{ Keys []map[string]any }
	if err := json.Unmarshal([]byte(out), &cli); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(served, &ops); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cli.Keys) != fmt.Sprint(ops.Keys) || len(ops.Keys) != len(keyIDs) {
		t.Errorf("keys jwks --config = %s\n/jwks.json = %s", out, served)
	}
	for _, id := range keyIDs {
		code, pemOut, stderr := runCLI(t, "", "keys", "pem", "--config", cfgFile, "--key-id", id)
		if code != 0 || !strings.HasPrefix(pemOut, "-----BEGIN PUBLIC KEY-----") {
			t.Errorf("keys pem --config --key-id %s: %d %s %s", id, code, pemOut, stderr)
		}
	}
}

// TestKeyCustodyPKCS11EndToEnd: `keys generate --pkcs11` makes an RS256
// and an ES256 key on SoftHSM, non-extractable; `run` delivers every
// intent to two development receivers, one per key, which verify each SET
// against /jwks.json; jwx verifies them again; and keys jwks, keys pem and
// sign --config work with the HSM keys.
func TestKeyCustodyPKCS11EndToEnd(t *testing.T) {
	if !keysource.PKCS11Supported {
		t.Skip("built without cgo: no PKCS#11")
	}
	h := testenv.StartSoftHSM(t)
	dir := t.TempDir()
	var keys []string
	labels := map[string]string{}
	for _, alg := range []string{"RS256", "ES256"} {
		id := "hsm-" + strings.ToLower(alg)
		labels[id] = h.KeyLabel(t, id)
		code, out, stderr := runCLI(t, "", "keys", "generate", "--pkcs11", "--alg", alg, "--id", id,
			"--module", h.Module, "--token-label", h.TokenLabel, "--key-label", labels[id], "--pin-file", h.PINFile)
		if code != 0 {
			t.Fatalf("keys generate --pkcs11 --alg %s: %d %s", alg, code, stderr)
		}
		if !strings.Contains(out, "not extractable") {
			t.Errorf("keys generate output: %s", out)
		}
		keys = append(keys, generatedSnippet(t, out))
	}
	// A label already on the token is refused, not duplicated.
	code, _, stderr := runCLI(t, "", "keys", "generate", "--pkcs11", "--alg", "ES256", "--id", "again",
		"--module", h.Module, "--token-label", h.TokenLabel, "--key-label", labels["hsm-es256"], "--pin-file", h.PINFile)
	if code == 0 || !strings.Contains(stderr, "already holds a key pair") {
		t.Errorf("generating over an existing label: exit %d, %s", code, stderr)
	}
	rs, es := newDevReceiver(t, "rs"), newDevReceiver(t, "es")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", keys, map[string]*devReceiver{"rs": rs, "es": es}, map[string]string{"rs": "hsm-rs256", "es": "hsm-es256"})

	// The private keys cannot leave the token.
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, kc := range cfg.Keys {
		sensitive, extractable, err := keysource.PrivateKeyAttributes(kc, keysource.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !sensitive || extractable {
			t.Errorf("%s: CKA_SENSITIVE=%v CKA_EXTRACTABLE=%v, want true, false", kc.ID, sensitive, extractable)
		}
	}

	run := startRelay(t, cfgFile, rs, es)
	n := custodyIntents()
	start := time.Now()
	run.publish(t, "hsm", n)
	waitAccepted(t, int64(n), 120*time.Second, rs, es)
	t.Logf("%d intents × 2 receivers delivered with SoftHSM keys in %v", n, time.Since(start).Round(time.Millisecond))
	served := httpBody(t, "http://"+run.svc.OpsAddr().String()+"/jwks.json")
	verifyWithJWX(t, served, "hsm-rs256", rs)
	verifyWithJWX(t, served, "hsm-es256", es)
	if dl := run.deadLetters(t); dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
	checkKeyCommands(t, cfgFile, served, "hsm-rs256", "hsm-es256")
	// sign --config signs with the HSM key as run does.
	code, signed, stderr := runCLI(t, `{"id":"one","type":"risc.account-disabled","subject":{"format":"email","email":"a@example.com"}}`,
		"sign", "--config", cfgFile, "--receiver", "es")
	if code != 0 {
		t.Fatalf("sign --config: %d %s", code, stderr)
	}
	set, _ := jwk.Parse(served)
	if _, err := jws.Verify([]byte(strings.TrimSpace(signed)), jws.WithKeySet(set)); err != nil {
		t.Errorf("sign --config output does not verify: %v", err)
	}
}

// kmsClient talks to the emulator directly, as an operator's console would.
func kmsClient(lk *testenv.LocalKMS) *kms.Client {
	return kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
		return aws.Credentials{AccessKeyID: "AKIDSETRELAYTEST", SecretAccessKey: "x"}, nil
	})}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
}

// generateKMS runs `keys generate --kms` and returns the keys[] entry.
func generateKMS(t *testing.T, lk *testenv.LocalKMS, endpoint, alg, id string) (snippet, arn string) {
	t.Helper()
	code, out, stderr := runCLI(t, "", "keys", "generate", "--kms", "--alg", alg, "--id", id, "--region", lk.Region, "--endpoint", endpoint)
	if code != 0 {
		t.Fatalf("keys generate --kms --alg %s: %d %s", alg, code, stderr)
	}
	m := regexp.MustCompile(`(?m)^key arn: (arn:aws:kms:\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no ARN printed: %s", out)
	}
	return generatedSnippet(t, out), m[1]
}

// TestKeyCustodyKMSEndToEnd: the same run with RS256 and ES256 keys that
// `keys generate --kms` created in local-kms.
func TestKeyCustodyKMSEndToEnd(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	dir := t.TempDir()
	rsKey, _ := generateKMS(t, lk, lk.URL, "RS256", "kms-rs256")
	esKey, _ := generateKMS(t, lk, lk.URL, "ES256", "kms-es256")
	rs, es := newDevReceiver(t, "rs"), newDevReceiver(t, "es")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{rsKey, esKey}, map[string]*devReceiver{"rs": rs, "es": es}, map[string]string{"rs": "kms-rs256", "es": "kms-es256"})
	run := startRelay(t, cfgFile, rs, es)
	n := custodyIntents()
	start := time.Now()
	run.publish(t, "kms", n)
	waitAccepted(t, int64(n), 120*time.Second, rs, es)
	t.Logf("%d intents × 2 receivers delivered with KMS keys in %v", n, time.Since(start).Round(time.Millisecond))
	served := httpBody(t, "http://"+run.svc.OpsAddr().String()+"/jwks.json")
	verifyWithJWX(t, served, "kms-rs256", rs)
	verifyWithJWX(t, served, "kms-es256", es)
	if dl := run.deadLetters(t); dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
	checkKeyCommands(t, cfgFile, served, "kms-rs256", "kms-es256")
	metrics := string(httpBody(t, "http://"+run.svc.OpsAddr().String()+"/metrics"))
	if !strings.Contains(metrics, `setrelay_sign_duration_seconds_count{key="kms-rs256"}`) {
		t.Error("/metrics lacks setrelay_sign_duration_seconds for the KMS key")
	}
}

// TestKeyRotationFileToKMS rotates a receiver from a file key to a KMS key
// the way the README says: publish the new key beside the old one, let
// receivers pick up the JWKS, then sign with the new key. Restarts between
// the steps are real shutdowns; SETs from both keys verify against the one
// JWKS, and no SET is rejected.
func TestKeyRotationFileToKMS(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	dir := t.TempDir()
	oldFile, _ := testenv.WriteKey(t, dir, "RS256", "k-old")
	oldKey := fmt.Sprintf("{id: k-old, alg: RS256, file: %s}", oldFile)
	newKey, _ := generateKMS(t, lk, lk.URL, "RS256", "k-new")
	rcv := newDevReceiver(t, "govuk")
	// A fixed ops port, so the receiver's JWKS URL survives the restarts.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := l.Addr().String()
	l.Close()
	rmap := map[string]*devReceiver{"govuk": rcv}

	steps := []struct {
		keys   []string
		signer string
	}{
		{[]string{oldKey}, "k-old"},         // before
		{[]string{oldKey, newKey}, "k-old"}, // new key published
		{[]string{oldKey, newKey}, "k-new"}, // switched
	}
	for i, st := range steps {
		run := startRelay(t, custodyConfig(t, dir, ops, st.keys, rmap, map[string]string{"govuk": st.signer}), rcv)
		run.publish(t, fmt.Sprintf("step%d", i), 100)
		waitAccepted(t, int64(100*(i+1)), 60*time.Second, rcv)
		if dl := run.deadLetters(t); dl != 0 {
			t.Fatalf("step %d: %d dead letters", i, dl)
		}
		if i < len(steps)-1 {
			// Longer than the receiver's JWKS cache.
			time.Sleep(300 * time.Millisecond)
			run.shutdown(t)
		}
	}
	served := httpBody(t, "http://"+ops+"/jwks.json")
	verifyWithJWX(t, served, "", rcv)
	kids := map[string]int{}
	rcv.mu.Lock()
	for _, s := range rcv.sets {
		msg, _ := jws.Parse(s)
		kid, _ := msg.Signatures()[0].ProtectedHeaders().KeyID()
		kids[kid]++
	}
	rcv.mu.Unlock()
	if kids["k-old"] != 200 || kids["k-new"] != 100 {
		t.Errorf("SETs by kid = %v, want 200 k-old and 100 k-new", kids)
	}
}

// TestKMSThrottlingRetried: a real proxy in front of the emulator answers
// every Sign with ThrottlingException for a while. The failures are
// classified transient and counted in setrelay_sign_errors_total, the
// intents are retried, and every one is delivered: no dead letter.
//
// No push reaches the receiver for a SET that could not be signed, so the
// receiver is never blamed. That a transient failure also counts no attempt
// of the intent is the worker's settle logic (signer.ErrTransient, on the
// i10core branch); here the throttling window is shorter than the retry
// budget.
func TestKMSThrottlingRetried(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	proxy := testenv.StartKMSProxy(t, lk.URL)
	dir := t.TempDir()
	key, _ := generateKMS(t, lk, proxy.URL, "ES256", "kms-es")
	rcv := newDevReceiver(t, "rcv")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{key}, map[string]*devReceiver{"rcv": rcv}, map[string]string{"rcv": "kms-es"})
	run := startRelay(t, cfgFile, rcv)
	var throttleUntil atomic.Int64
	throttleUntil.Store(time.Now().Add(1500 * time.Millisecond).UnixNano())
	proxy.SetThrottle(func(op string) bool { return testenv.IsKMSSign(op) && time.Now().UnixNano() < throttleUntil.Load() })
	const n = 50
	run.publish(t, "thr", n)
	waitAccepted(t, n, 60*time.Second, rcv)
	if proxy.Throttled.Load() == 0 {
		t.Fatal("the proxy throttled nothing: the test proves nothing")
	}
	transient := testutil.ToFloat64(counter(t, run.reg, "setrelay_sign_errors_total", map[string]string{"key": "kms-es", "reason": "transient"}))
	if transient == 0 {
		t.Error("setrelay_sign_errors_total{reason=transient} = 0")
	}
	if dl := run.deadLetters(t); dl != 0 {
		t.Errorf("%d dead letters after throttling", dl)
	}
	// A SET that could not be signed is never pushed: the receiver saw one
	// request per intent, none of them failed.
	if st := rcv.rcv.Load().Stats(); st.Requests != n {
		t.Errorf("receiver got %d requests for %d intents: %+v", st.Requests, n, st)
	}
	verifyWithJWX(t, httpBody(t, "http://"+run.svc.OpsAddr().String()+"/jwks.json"), "kms-es", rcv)
	t.Logf("%d Sign calls throttled, %v transient sign errors, %d SETs delivered", proxy.Throttled.Load(), transient, rcv.accepted())
}

// TestKMSDisabledKeyBlocksDelivery: disabling the KMS key stops delivery
// to its receiver; the failures are classified key_unusable and block the
// receiver (shared state blocked, the rest held back unsigned); nothing is
// dead-lettered; enabling the key again and asking for a probe (`setrelay
// receivers unblock`) delivers everything held back.
func TestKMSDisabledKeyBlocksDelivery(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	dir := t.TempDir()
	key, arn := generateKMS(t, lk, lk.URL, "RS256", "kms-rs")
	rcv := newDevReceiver(t, "rcv")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{key}, map[string]*devReceiver{"rcv": rcv}, map[string]string{"rcv": "kms-rs"})
	run := startRelay(t, cfgFile, rcv)
	run.publish(t, "ok", 10)
	waitAccepted(t, 10, 30*time.Second, rcv)

	client := kmsClient(lk)
	if _, err := client.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	run.publish(t, "held", 20)
	unusable := counter(t, run.reg, "setrelay_sign_errors_total", map[string]string{"key": "kms-rs", "reason": "key_unusable"})
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := worker.SharedState(context.Background(), run.svc.JetStream(), "rcv")
		if err == nil && st.State == "blocked" && st.Reason == worker.ReasonKeyUnusable && testutil.ToFloat64(unusable) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver not blocked for key_unusable (state %+v, %v; %v key_unusable sign errors)", st, err, testutil.ToFloat64(unusable))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := rcv.accepted(); got != 10 {
		t.Errorf("receiver accepted %d SETs while the key was disabled, want still 10", got)
	}
	if dl := run.deadLetters(t); dl != 0 {
		t.Fatalf("%d dead letters while the key was disabled", dl)
	}

	if _, err := client.EnableKey(context.Background(), &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if err := worker.RequestProbe(context.Background(), run.svc.JetStream(), "rcv"); err != nil {
		t.Fatal(err)
	}
	waitAccepted(t, 30, 60*time.Second, rcv)
	if dl := run.deadLetters(t); dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
	verifyWithJWX(t, httpBody(t, "http://"+run.svc.OpsAddr().String()+"/jwks.json"), "kms-rs", rcv)
}

// counter finds one labelled series of a counter vector in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	return collectorFunc(func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue next
					}
				}
				return m.GetCounter().GetValue()
			}
		}
		return 0
	})
}

// collectorFunc is a gauge computed on collection, so testutil.ToFloat64
// reads the current value of a series found by name and labels.
type collectorFunc func() float64

var collectorDesc = prometheus.NewDesc("setrelay_test_probe", "probe", nil, nil)

func (f collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- collectorDesc }
func (f collectorFunc) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(collectorDesc, prometheus.GaugeValue, f())
}

// TestRemoteKeyAlgMismatchExits2: an alg that does not fit the KMS key's
// real type stops `run` (and `keys jwks`) at start-up with status 2 and a
// message naming the key, the alg and the key's type.
func TestRemoteKeyAlgMismatchExits2(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	dir := t.TempDir()
	key, _ := generateKMS(t, lk, lk.URL, "ES256", "kms-es")
	key = strings.Replace(key, "alg: ES256", "alg: RS256", 1)
	rcv := newDevReceiver(t, "rcv")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{key}, map[string]*devReceiver{"rcv": rcv}, map[string]string{"rcv": "kms-es"})
	for _, args := range [][]string{{"run", "--config", cfgFile}, {"keys", "jwks", "--config", cfgFile}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb strings.Builder
		code := execute(ctx, args, strings.NewReader(""), &out, &errb)
		cancel()
		if code != exitUsage || !strings.Contains(errb.String(), "keys[0].kms") || !strings.Contains(errb.String(), "RS256 needs an RSA key, got EC P-256") {
			t.Errorf("%v: exit %d, stderr %s", args, code, errb.String())
		}
	}
}

// TestDemoWithKMSKey: `demo --key-config --key-id` runs the whole demo
// signing with a KMS key, and its checks (every good intent delivered and
// verified against /jwks.json by the receiver) pass.
func TestDemoWithKMSKey(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	dir := t.TempDir()
	key, _ := generateKMS(t, lk, lk.URL, "RS256", "demo-kms")
	rcv := newDevReceiver(t, "rcv")
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{key}, map[string]*devReceiver{"rcv": rcv}, map[string]string{"rcv": "demo-kms"})
	code, out, stderr := runCLI(t, "", "demo", "--key-config", cfgFile, "--key-id", "demo-kms", "--count", "40", "--fault-rate", "-1", "--json")
	if code != 0 {
		t.Fatalf("demo --key-config: exit %d\n%s\n%s", code, out, stderr)
	}
	var sum struct {
		OK       bool `json:"ok"`
		Verified int  `json:"verified"`
		SET      struct {
			Header struct {
				Alg string `json:"alg"`
				Kid string `json:"kid"`
			} `json:"header"`
		} `json:"set"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary: %v\n%s", err, out)
	}
	if !sum.OK || sum.Verified < 40 || sum.SET.Header.Alg != "RS256" || sum.SET.Header.Kid != "demo-kms" {
		t.Errorf("demo with a KMS key: %s", out)
	}
}

// TestUnreachableKMSExits1: a KMS that cannot be reached at start-up is a
// failure a restart may cure (status 1), not a configuration mistake (2).
func TestUnreachableKMSExits1(t *testing.T) {
	testenv.StartLocalKMS(t) // the test credentials in the environment
	dir := t.TempDir()
	rcv := newDevReceiver(t, "rcv")
	key := "{id: kms-x, alg: RS256, kms: {provider: aws, key_id: alias/x, region: eu-west-2, endpoint: \"http://127.0.0.1:1\"}}"
	cfgFile := custodyConfig(t, dir, "127.0.0.1:0", []string{key}, map[string]*devReceiver{"rcv": rcv}, map[string]string{"rcv": "kms-x"})
	for _, args := range [][]string{{"run", "--config", cfgFile}, {"keys", "pem", "--config", cfgFile, "--key-id", "kms-x"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var out, errb strings.Builder
		code := execute(ctx, args, strings.NewReader(""), &out, &errb)
		cancel()
		if code != exitFailure || !strings.Contains(errb.String(), "transient") {
			t.Errorf("%v: exit %d, stderr %s", args, code, errb.String())
		}
	}
}
