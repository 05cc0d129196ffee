package relay

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/ssf"
)

// With ssf.enabled the relay serves discovery, the JWKS, the management
// API and poll delivery on the SSF listener, beside its configured
// receivers; with it off (every other test here) there is no listener.
func TestRunServesTheSSFAPI(t *testing.T) {
	t.Parallel()
	sk, rcv := newSink(t)
	_ = sk
	cfg, key := testConfig(t, rcv.URL+"/events")
	cfg.SSF = config.SSF{
		Enabled: true, Listen: "127.0.0.1:0", BaseURL: "https://tx.example",
		Clients: []config.SSFClient{{ID: "r1", TokenSHA256: ssf.HashToken("r1-token"), Audience: config.Audience{"https://r1.example/"}}},
	}
	cfg.FillDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	base := "http://" + svc.SSFAddr().String()

	call := func(method, path, token string, body any) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}

	status, b := call("GET", "/.well-known/ssf-configuration", "", nil)
	var md map[string]any
	if status != 200 || json.Unmarshal(b, &md) != nil || md["issuer"] != cfg.Issuer || md["jwks_uri"] != "https://tx.example/jwks.json" {
		t.Fatalf("metadata %d %s", status, b)
	}
	if status, b := call("GET", "/jwks.json", "", nil); status != 200 || !strings.Contains(string(b), `"kid":"k1"`) || strings.Contains(string(b), `"d":`) {
		t.Fatalf("jwks %d %s", status, b)
	}
	status, b = call("POST", "/ssf/streams", "r1-token", map[string]any{"events_requested": []string{"https://schemas.openid.net/secevent/risc/event-type/account-disabled"}})
	var st map[string]any
	if status != 201 || json.Unmarshal(b, &st) != nil {
		t.Fatalf("create %d %s", status, b)
	}
	id := st["stream_id"].(string)

	nc, err := nats.Connect(svc.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	in, _ := intent.Decode([]byte(`{"id":"ssf-relay-1","type":"risc.account-disabled","subject":{"format":"email","email":"u@example.com"}}`), intent.Options{})
	if _, err := queue.NewPublisher(js, intent.Options{}).Publish(ctx, in); err != nil {
		t.Fatal(err)
	}
	status, b = call("POST", "/ssf/poll/"+id, "r1-token", map[string]any{"maxEvents": 10})
	var pr struct{ Sets map[string]string }
	if status != 200 || json.Unmarshal(b, &pr) != nil || len(pr.Sets) != 1 {
		t.Fatalf("poll %d %s", status, b)
	}
	for jti, compact := range pr.Sets {
		tok, err := jwt.Parse(compact, func(*jwt.Token) (any, error) { return key.Public(), nil }, jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(cfg.Issuer), jwt.WithAudience("https://r1.example/"))
		if err != nil {
			t.Fatalf("golang-jwt rejects the polled SET: %v", err)
		}
		if tok.Claims.(jwt.MapClaims)["jti"] != jti || tok.Header["typ"] != "secevent+jwt" {
			t.Fatalf("SET %v %v", tok.Header, tok.Claims)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

// ssf.tls serves the API over HTTPS with the configured certificate.
func TestSSFListenerServesTLS(t *testing.T) {
	t.Parallel()
	_, rcv := newSink(t)
	cfg, _ := testConfig(t, rcv.URL+"/events")
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg.SSF = config.SSF{
		Enabled: true, Listen: "127.0.0.1:0", TLS: config.ServerTLS{Cert: certFile, Key: keyFile},
		Clients: []config.SSFClient{{ID: "r1", TokenSHA256: ssf.HashToken("r1-token"), Audience: config.Audience{"https://r1.example/"}}},
	}
	cfg.FillDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + svc.SSFAddr().String() + "/.well-known/ssf-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("GET over TLS: %d, TLS %v", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP to the TLS listener is refused.
	if resp, err := http.Get("http://" + svc.SSFAddr().String() + "/.well-known/ssf-configuration"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the TLS listener answered plain HTTP")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "setrelay-ssf-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "ssf.crt"), filepath.Join(dir, "ssf.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
