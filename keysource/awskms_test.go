package keysource

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/signer"
)

// kmsKey creates a KMS key for alg on the emulator at endpoint, as `keys
// generate --kms` does, and returns its configuration entry.
func kmsKey(t *testing.T, lk *testenv.LocalKMS, endpoint string, alg jose.SignatureAlgorithm) config.Key {
	t.Helper()
	arn, err := GenerateKMS(context.Background(), GenerateKMSRequest{Alg: alg, Region: lk.Region, Endpoint: endpoint, Description: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(arn, "arn:aws:kms:eu-west-2:") {
		t.Fatalf("arn = %q", arn)
	}
	return config.Key{ID: "kms-" + string(alg), Alg: string(alg), KMS: &config.KMSKey{Provider: "aws", KeyID: arn, Region: lk.Region, Endpoint: endpoint}}
}

// TestKMSSigns signs with RS256, ES256 and ES384 KMS keys and verifies each
// JWS with golang-jwt, independently of go-jose.
func TestKMSSigns(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384} {
		t.Run(string(alg), func(t *testing.T) {
			kc := kmsKey(t, lk, lk.URL, alg)
			k, err := Open(context.Background(), kc, Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !k.Remote() || k.Alg != alg {
				t.Fatalf("key = %v", k)
			}
			sg, err := Signer(k, kc, nil, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					compact, err := sg.Sign(fmt.Appendf(nil, `{"jti":"j%d","iss":"https://issuer.example/"}`, i), true)
					if err != nil {
						t.Error(err)
						return
					}
					var claims jwt.RegisteredClaims
					if _, err := jwt.ParseWithClaims(compact, &claims, func(tok *jwt.Token) (any, error) {
						if tok.Header["kid"] != kc.ID {
							return nil, fmt.Errorf("kid %v", tok.Header["kid"])
						}
						return k.Public(), nil
					}, jwt.WithValidMethods([]string{string(alg)})); err != nil || claims.ID != fmt.Sprintf("j%d", i) {
						t.Errorf("golang-jwt does not verify the %s SET: %v", alg, err)
					}
				}()
			}
			wg.Wait()
		})
	}
}

// TestKMSAlgMismatch: alg is checked against the KMS key's real type.
func TestKMSAlgMismatch(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	kc := kmsKey(t, lk, lk.URL, jose.ES256)
	kc.Alg = "RS256"
	if _, err := Open(context.Background(), kc, Options{}); !errors.Is(err, signer.ErrKeyMismatch) || !strings.Contains(err.Error(), "RS256 needs an RSA key, got EC P-256") {
		t.Fatalf("err = %v", err)
	}
}

// TestKMSFailuresAreClassified: a throttling answer (from a real proxy in
// front of the emulator) is ErrTransient, a disabled key ErrKeyUnusable,
// and both are counted in setrelay_sign_errors_total by reason.
func TestKMSFailuresAreClassified(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	proxy := testenv.StartKMSProxy(t, lk.URL)
	kc := kmsKey(t, lk, proxy.URL, jose.RS256)
	k, err := Open(context.Background(), kc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m, err := signer.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	sg, err := Signer(k, kc, m, Options{})
	if err != nil {
		t.Fatal(err)
	}

	proxy.SetThrottle(testenv.IsKMSSign)
	_, err = sg.Sign([]byte(`{}`), true)
	if !errors.Is(err, signer.ErrTransient) || errors.Is(err, signer.ErrKeyUnusable) || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("throttled: err = %v, want ErrTransient", err)
	}
	// The SDK tried three times before giving up to the worker's backoff.
	if n := proxy.Throttled.Load(); n != 3 {
		t.Errorf("%d throttled calls, want 3 (the SDK's attempts)", n)
	}
	proxy.SetThrottle(nil)
	if _, err := sg.Sign([]byte(`{}`), true); err != nil {
		t.Fatalf("after throttling ends: %v", err)
	}

	client := kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: awsCreds{}}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
	if _, err := client.DisableKey(context.Background(), &kms.DisableKeyInput{KeyId: aws.String(kc.KMS.KeyID)}); err != nil {
		t.Fatal(err)
	}
	_, err = sg.Sign([]byte(`{}`), true)
	if !errors.Is(err, signer.ErrKeyUnusable) || errors.Is(err, signer.ErrTransient) || !strings.Contains(err.Error(), "DisabledException") {
		t.Fatalf("disabled: err = %v, want ErrKeyUnusable", err)
	}
	// Opening a disabled key fails at start-up, saying what to do.
	if _, err := Open(context.Background(), kc, Options{}); !errors.Is(err, signer.ErrKeyUnusable) || !strings.Contains(err.Error(), "enable it") {
		t.Errorf("open disabled: %v", err)
	}
	for reason, want := range map[string]float64{signer.ReasonTransient: 1, signer.ReasonKeyUnusable: 1} {
		if got := testutil.ToFloat64(m.Errors().WithLabelValues(kc.ID, reason)); got != want {
			t.Errorf("setrelay_sign_errors_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

type awsCreds struct{}

func (awsCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "AKIDSETRELAYTEST", SecretAccessKey: "x"}, nil
}

// TestClassifyAWSNetwork: an unreachable KMS is transient.
func TestClassifyAWSNetwork(t *testing.T) {
	kc := config.Key{ID: "x", Alg: "RS256", KMS: &config.KMSKey{Provider: "aws", KeyID: "alias/x", Region: "eu-west-2", Endpoint: "http://127.0.0.1:1"}}
	testenv.StartLocalKMS(t) // for the test credentials in the environment
	_, err := Open(context.Background(), kc, Options{CallTimeout: 2e9})
	if !errors.Is(err, signer.ErrTransient) {
		t.Fatalf("err = %v, want ErrTransient", err)
	}
}

// TestKMSUnknownFailureBlocks: KMS (or the credential chain in front of it)
// answers Sign with an error code setrelay does not list. No SET can cause
// a signing failure (only a digest is sent), so it is the key's problem:
// ErrKeyUnusable, which blocks the receivers and keeps their SETs, rather
// than an unclassified error, which the worker retries as counted attempts
// and then dead-letters.
func TestKMSUnknownFailureBlocks(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	proxy := testenv.StartKMSProxy(t, lk.URL)
	kc := kmsKey(t, lk, proxy.URL, jose.ES256)
	k, err := Open(context.Background(), kc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := Signer(k, kc, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []string{"IncompleteSignature", "InvalidIdentityToken", "SomethingNewException"} {
		proxy.SetFault(testenv.IsKMSSign, 400, code)
		_, err = sg.Sign([]byte(`{}`), true)
		if !errors.Is(err, signer.ErrKeyUnusable) || errors.Is(err, signer.ErrTransient) || !strings.Contains(err.Error(), code) {
			t.Errorf("%s: err = %v, want ErrKeyUnusable naming the code", code, err)
		}
	}
	proxy.SetFault(nil, 0, "")
	if _, err := sg.Sign([]byte(`{}`), true); err != nil {
		t.Fatalf("after the fault ends: %v", err)
	}
}

// TestKMSUnsupportedKeySpec: a SIGN_VERIFY key of a spec no JWS algorithm
// setrelay signs with takes (secp256k1) is refused at open, naming the
// spec and the specs that work.
func TestKMSUnsupportedKeySpec(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	client := kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: awsCreds{}}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
	out, err := client.CreateKey(context.Background(), &kms.CreateKeyInput{KeySpec: "ECC_SECG_P256K1", KeyUsage: "SIGN_VERIFY"})
	if err != nil {
		t.Fatal(err)
	}
	kc := config.Key{ID: "k", KMS: &config.KMSKey{Provider: "aws", KeyID: aws.ToString(out.KeyMetadata.Arn), Region: lk.Region, Endpoint: lk.URL}}
	_, err = Open(context.Background(), kc, Options{})
	if err == nil || !strings.Contains(err.Error(), "ECC_SECG_P256K1") || !strings.Contains(err.Error(), "ECC_NIST_P256") {
		t.Fatalf("err = %v, want the spec named and the supported ones listed", err)
	}
}

// TestKMSPendingDeletionSaysCancel: a key scheduled for deletion is
// refused at open with the one fix that works (enable-key alone fails on
// it), and signing with it once open is ErrKeyUnusable.
func TestKMSPendingDeletionSaysCancel(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	kc := kmsKey(t, lk, lk.URL, jose.ES256)
	k, err := Open(context.Background(), kc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := Signer(k, kc, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	client := kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: awsCreds{}}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
	if _, err := client.ScheduleKeyDeletion(context.Background(), &kms.ScheduleKeyDeletionInput{KeyId: aws.String(kc.KMS.KeyID), PendingWindowInDays: aws.Int32(7)}); err != nil {
		t.Fatal(err)
	}
	if _, err := sg.Sign([]byte(`{}`), true); !errors.Is(err, signer.ErrKeyUnusable) || errors.Is(err, signer.ErrTransient) {
		t.Errorf("sign with a key pending deletion: %v, want ErrKeyUnusable", err)
	}
	if _, err := Open(context.Background(), kc, Options{}); !errors.Is(err, signer.ErrKeyUnusable) || !strings.Contains(err.Error(), "cancel-key-deletion") {
		t.Errorf("open a key pending deletion: %v", err)
	}
}
