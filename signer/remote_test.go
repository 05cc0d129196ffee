package signer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// device is a crypto.Signer standing in for a token in these unit tests:
// it hides the concrete key type from go-jose, as a PKCS#11 or KMS key
// does, and can fail on demand. The key custody tests in keysource and
// cmd/setrelay use SoftHSM and local-kms instead.
type device struct {
	key   crypto.Signer
	fail  error
	reply []byte // returned instead of a signature when set
	calls atomic.Int64
}

func (d *device) Public() crypto.PublicKey { return d.key.Public() }
func (d *device) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	d.calls.Add(1)
	if d.fail != nil {
		return nil, d.fail
	}
	if d.reply != nil {
		return d.reply, nil
	}
	return d.key.Sign(r, digest, opts)
}

func TestRemoteKeySignsJOSEEncodings(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, c := range []struct {
		alg jose.SignatureAlgorithm
		key crypto.Signer
	}{{jose.RS256, rsaKey}, {jose.PS256, rsaKey}, {jose.ES256, p256}, {jose.ES384, p384}} {
		k, err := NewRemoteKey(&device{key: c.key}, "dev", c.alg, nil)
		if err != nil {
			t.Fatal(err)
		}
		sg, err := New(k)
		if err != nil {
			t.Fatal(err)
		}
		// Many times, so a short R or S (1 in 256) is padded at least once.
		for range 300 {
			compact, err := sg.Sign([]byte(`{"jti":"x"}`), true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := jwt.Parse(compact, func(*jwt.Token) (any, error) { return c.key.Public(), nil }, jwt.WithValidMethods([]string{string(c.alg)})); err != nil {
				t.Fatalf("%s: golang-jwt rejects the remote signature: %v", c.alg, err)
			}
			if c.alg == jose.RS256 || c.alg == jose.PS256 {
				break
			}
		}
		if _, err := k.PrivatePEM(); err == nil {
			t.Errorf("%s: PrivatePEM of a remote key succeeded", c.alg)
		}
	}
}

func TestRemoteKeyRejectsEdDSAAndMismatch(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewRemoteKey(&device{key: p256}, "dev", jose.ES384, nil); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("ES384 on P-256: %v", err)
	}
	if _, err := NewRemoteKey(&device{key: p256}, "dev", jose.RS256, nil); !errors.Is(err, ErrKeyMismatch) || !strings.Contains(err.Error(), "RS256 needs an RSA key, got EC P-256") {
		t.Errorf("RS256 on P-256: %v", err)
	}
}

func TestECDSADERToJOSERejectsGarbage(t *testing.T) {
	if _, err := ecdsaDERToJOSE([]byte{1, 2, 3}, 32); err == nil {
		t.Error("garbage accepted")
	}
	// R of 33 bytes does not fit P-256.
	der := []byte{0x30, 0x26, 0x02, 0x21, 0x01}
	der = append(der, make([]byte, 32)...)
	der = append(der, 0x02, 0x01, 0x01)
	if _, err := ecdsaDERToJOSE(der, 32); err == nil {
		t.Error("oversized R accepted")
	}
}

// TestSignerClassifiesAndMeasures: failures keep their class through the
// Signer, and the metrics count them by reason; max_sign_rate refuses
// rather than queueing past its wait.
func TestSignerClassifiesAndMeasures(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	dev := &device{key: p256}
	k, err := NewRemoteKey(dev, "dev", jose.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := New(k, WithMetrics(m), WithRateLimit(0.001, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Sign([]byte(`{}`), true); err != nil {
		t.Fatal(err)
	}
	// The second would wait ~1000 s > 10 ms: refused at once (a slow
	// machine cannot refill the bucket in between).
	_, err = sg.Sign([]byte(`{}`), true)
	if !errors.Is(err, ErrTransient) || dev.calls.Load() != 1 {
		t.Fatalf("over the rate: %v (device calls %d)", err, dev.calls.Load())
	}

	sg, _ = New(k, WithMetrics(m))
	dev.fail = ErrKeyUnusable
	if _, err := sg.Sign([]byte(`{}`), true); !errors.Is(err, ErrKeyUnusable) {
		t.Fatalf("unusable: %v", err)
	}
	dev.fail = errors.New("boom")
	if _, err := sg.Sign([]byte(`{}`), true); err == nil || errors.Is(err, ErrTransient) || errors.Is(err, ErrKeyUnusable) {
		t.Fatalf("other: %v", err)
	}
	for reason, want := range map[string]float64{ReasonRateLimited: 1, ReasonKeyUnusable: 1, ReasonOther: 1, ReasonTransient: 0} {
		if got := testutil.ToFloat64(m.errors.WithLabelValues("dev", reason)); got != want {
			t.Errorf("sign errors{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if n := testutil.CollectAndCount(m.duration); n != 1 {
		t.Errorf("duration series = %d, want 1", n)
	}
}

// TestMalformedDeviceSignatureIsKeyUnusable: an HSM or KMS that answers
// Sign with bytes that are not an ECDSA DER signature is a device
// problem, not the SET's: ErrKeyUnusable, so the worker blocks the
// receivers and keeps their SETs instead of counting attempts against each
// intent until its dead letter.
func TestMalformedDeviceSignatureIsKeyUnusable(t *testing.T) {
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k, err := NewRemoteKey(&device{key: p256, reply: []byte("not DER")}, "dev", jose.ES256, nil)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Sign([]byte(`{}`), true); !errors.Is(err, ErrKeyUnusable) || errors.Is(err, ErrTransient) {
		t.Fatalf("err = %v, want ErrKeyUnusable", err)
	}
}
