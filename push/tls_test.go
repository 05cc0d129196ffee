package push

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// writePEM writes one PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientCA makes a CA and a client certificate it signed, as PEM files.
func clientCA(t *testing.T) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "setrelay-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, writePEM(t, dir, "client.pem", "CERTIFICATE", der), writePEM(t, dir, "client-key.pem", "PRIVATE KEY", keyDER)
}

func TestMutualTLS(t *testing.T) {
	pool, certFile, keyFile := clientCA(t)
	var peer atomic.Value
	peer.Store("")
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) > 0 {
			peer.Store(r.TLS.PeerCertificates[0].Subject.CommonName)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	s.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	s.Config.ErrorLog = discardLog
	s.StartTLS()
	defer s.Close()

	// The server's CA comes from a PEM file, as an operator would give it.
	caFile := writePEM(t, t.TempDir(), "ca.pem", "CERTIFICATE", s.Certificate().Raw)
	cfg := Config{Name: "mtls", Endpoint: s.URL, TLS: TLSConfig{CAFile: caFile, CertFile: certFile, KeyFile: keyFile}}
	c, _ := newTestClient(t, cfg)
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Delivered || peer.Load() != "setrelay-test" {
		t.Fatalf("mTLS push: %+v, peer %q", r, peer.Load())
	}

	// Without the client certificate the handshake fails: retryable, as a
	// certificate rotation in progress looks the same.
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "", ""
	c2, _ := newTestClient(t, cfg)
	if r := c2.Push(context.Background(), []byte(testJWS)); r.Outcome != Retry || r.Status != 0 {
		t.Fatalf("push without client cert: %+v", r)
	}
}

func TestTLSIsVerified(t *testing.T) {
	rc := newReceiver(t, true, nil)
	// No CA configured: httptest's certificate is not trusted.
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL})
	r := c.Push(context.Background(), []byte(testJWS))
	// Untrusted is a configuration failure (tls.ca_file, or the wrong
	// endpoint): the receiver is blocked until it is fixed.
	if r.Outcome != Blocked || r.Reason != ReasonTLS {
		t.Fatalf("untrusted certificate: %+v", r)
	}
	if rc.hits.Load() != 0 {
		t.Fatal("request sent over an unverified connection")
	}
}

func TestTLSMinimumVersion(t *testing.T) {
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	}))
	s.TLS = &tls.Config{MaxVersion: tls.VersionTLS11}
	s.Config.ErrorLog = discardLog
	s.StartTLS()
	defer s.Close()
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: s.URL, TLS: TLSConfig{RootCAs: testPool(t, s)}})
	if r := c.Push(context.Background(), []byte(testJWS)); r.Outcome != Retry || r.Status != 0 {
		t.Fatalf("TLS 1.1 server accepted: %+v", r)
	}
}
