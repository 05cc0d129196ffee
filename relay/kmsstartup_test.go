package relay

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/signer"
)

// kmsOutage is a real HTTP front to local-kms that answers the first
// `failures` DescribeKey calls with KMSInternalException, as KMS does
// during a regional incident, and forwards everything else.
type kmsOutage struct {
	url      string
	failures atomic.Int64
	failed   atomic.Int64
}

func startKMSOutage(t *testing.T, target string, failures int64) *kmsOutage {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	o := &kmsOutage{}
	o.failures.Store(failures)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".DescribeKey") && o.failed.Load() < o.failures.Load() {
			o.failed.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			// 400, so the SDK does not retry it itself: the test sees
			// exactly the relay's own retries.
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"KMSInternalException","message":"internal error"}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	o.url = srv.URL
	return o
}

func kmsOnlyConfig(arn, region, endpoint string) *config.Config {
	return &config.Config{Keys: []config.Key{{ID: "kms-1", Alg: "ES256", KMS: &config.KMSKey{Provider: "aws", KeyID: arn, Region: region, Endpoint: endpoint}}}}
}

func fastKeyRetry(t *testing.T, total time.Duration) {
	old := startupKeyRetry
	startupKeyRetry = keyRetry{initial: 100 * time.Millisecond, max: 400 * time.Millisecond, total: total}
	t.Cleanup(func() { startupKeyRetry = old })
}

// TestStartupRidesOutKMSOutage: a KMS that fails transiently at start-up
// is retried with backoff, with a log line per retry, and start-up goes on
// once it answers; an outage longer than the bound fails with a transient
// error (exit 1, not the configuration's 2); a disabled key, a
// configuration problem, is not retried at all.
func TestStartupRidesOutKMSOutage(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	arn, err := keysource.GenerateKMS(context.Background(), keysource.GenerateKMSRequest{Alg: jose.ES256, Region: lk.Region, Endpoint: lk.URL, Description: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	sm, err := signer.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("short outage", func(t *testing.T) {
		fastKeyRetry(t, 20*time.Second)
		out := startKMSOutage(t, lk.URL, 3)
		core, logs := observer.New(zapcore.WarnLevel)
		keys, signers, err := loadKeys(ctx, kmsOnlyConfig(arn, lk.Region, out.url), zap.New(core), sm)
		if err != nil {
			t.Fatalf("start-up failed during a 3-call KMS outage: %v", err)
		}
		defer closeKeys(keys)
		if signers["kms-1"] == nil {
			t.Fatal("no signer for kms-1")
		}
		if n := out.failed.Load(); n != 3 {
			t.Errorf("%d failed DescribeKey calls, want 3", n)
		}
		if n := logs.FilterMessage("signing key service unavailable at start-up; retrying").Len(); n != 3 {
			t.Errorf("%d retry log lines, want 3 (one per failed attempt)", n)
		}
	})

	t.Run("long outage", func(t *testing.T) {
		fastKeyRetry(t, 1500*time.Millisecond)
		out := startKMSOutage(t, lk.URL, 1<<30)
		start := time.Now()
		_, _, err := loadKeys(ctx, kmsOnlyConfig(arn, lk.Region, out.url), zap.NewNop(), sm)
		if err == nil {
			t.Fatal("start-up succeeded with KMS down")
		}
		var ce *config.Error
		if errors.As(err, &ce) || !errors.Is(err, signer.ErrTransient) {
			t.Fatalf("a KMS outage is reported as %T %v; want a transient error (exit 1), not a configuration problem (exit 2)", err, err)
		}
		if el := time.Since(start); el < time.Second {
			t.Errorf("gave up after %s, before the 1.5s bound's retries", el)
		}
		if n := out.failed.Load(); n < 3 {
			t.Errorf("only %d attempts in the bound", n)
		}
		if !strings.Contains(err.Error(), "giving up") {
			t.Errorf("the error does not say it gave up: %v", err)
		}
	})

	t.Run("disabled key", func(t *testing.T) {
		fastKeyRetry(t, 20*time.Second)
		arn2, err := keysource.GenerateKMS(ctx, keysource.GenerateKMSRequest{Alg: jose.ES256, Region: lk.Region, Endpoint: lk.URL, Description: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		client := kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: aws.AnonymousCredentials{}}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
		if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn2)}); err != nil {
			t.Fatal(err)
		}
		core, logs := observer.New(zapcore.WarnLevel)
		_, _, err = loadKeys(ctx, kmsOnlyConfig(arn2, lk.Region, lk.URL), zap.New(core), sm)
		var ce *config.Error
		if !errors.As(err, &ce) {
			t.Fatalf("a disabled key gives %T %v, want a configuration error (exit 2)", err, err)
		}
		if logs.Len() != 0 {
			t.Errorf("a disabled key was retried: %v", logs.All())
		}
	})
}
