package relay

import (
	"context"
	"strings"
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
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// TestKMSKeyFailuresSettle is the sign-error contract end to end, with a
// real KMS emulator (local-kms) behind a fault proxy: a throttled KMS
// (signer.ErrTransient) hands intents back without counting an attempt or
// blaming the receiver; a disabled key (signer.ErrKeyUnusable) blocks the
// receiver with no dead letter; enabling the key and asking for a probe
// delivers everything, each intent once, on its first counted attempt.
func TestKMSKeyFailuresSettle(t *testing.T) {
	lk := testenv.StartLocalKMS(t)
	proxy := testenv.StartKMSProxy(t, lk.URL)
	arn, err := keysource.GenerateKMS(context.Background(), keysource.GenerateKMSRequest{Alg: jose.ES256, Region: lk.Region, Endpoint: proxy.URL, Description: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	o := newOAuthReceiver(t)
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: o.srv.URL + "/events", Concurrency: 8})
	cfg := rc.Config
	cfg.Keys = append(cfg.Keys, config.Key{ID: "kms-1", KMS: &config.KMSKey{Provider: "aws", KeyID: arn, Region: lk.Region, Endpoint: proxy.URL}})
	r := &cfg.Receivers[0]
	r.Key = "kms-1"
	r.Auth.TokenURL, r.Auth.ClientID, r.Auth.ClientSecret = o.srv.URL+"/token", "relay", "new-secret"
	r.Retry.Initial, r.Retry.Max = 100*time.Millisecond, 500*time.Millisecond
	r.Pause.Initial, r.Pause.Max, r.Pause.ProbeInterval = time.Second, 2*time.Second, 300*time.Millisecond
	cfg.FillDefaults()

	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := Start(ctx, cfg, zap.New(core), reg)
	if err != nil {
		t.Fatal(err)
	}
	js := svc.JetStream()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Throttled: nothing is signed, nothing counted, the receiver not paused.
	proxy.SetThrottle(testenv.IsKMSSign)
	const n = 40
	publishN(t, svc.ClientURL(), n)
	waitUntil(t, 10*time.Second, "transient sign errors", func() bool {
		return metricSum(t, reg, "setrelay_sign_errors_total", "transient") > 0
	})
	if st := stateOf(t, reg, "local"); st == "paused" || st == "blocked" {
		t.Fatalf("state %s while the KMS throttles: the key's trouble is not the receiver's", st)
	}
	// Disabled: the receiver blocks, nothing is dead-lettered.
	client := kms.NewFromConfig(aws.Config{Region: lk.Region, Credentials: aws.AnonymousCredentials{}}, func(o *kms.Options) { o.BaseEndpoint = aws.String(lk.URL) })
	if _, err := client.DisableKey(ctx, &kms.DisableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	proxy.SetThrottle(nil)
	waitUntil(t, 10*time.Second, "the receiver blocked", func() bool { return stateOf(t, reg, "local") == "blocked" })
	if d := testenv.StreamMsgs(t, js, queue.DLQStream); d != 0 {
		t.Fatalf("%d dead letters with the key disabled, want 0", d)
	}
	lines := logs.FilterMessageSnippet("receiver blocked").FilterLevelExact(zapcore.ErrorLevel).All()
	if len(lines) != 1 || lines[0].ContextMap()["reason"] != worker.ReasonKeyUnusable ||
		!strings.Contains(lines[0].ContextMap()["fix"].(string), "KMS") {
		t.Fatalf("error lines %+v, want one key_unusable line naming the KMS", lines)
	}
	if o.pushes.Load() != 0 {
		t.Fatalf("%d pushes without a signature", o.pushes.Load())
	}

	// Enabled again: a probe (asked for, as `setrelay receivers unblock`
	// does) gets through and everything is delivered once.
	if _, err := client.EnableKey(ctx, &kms.EnableKeyInput{KeyId: aws.String(arn)}); err != nil {
		t.Fatal(err)
	}
	if err := worker.RequestProbe(ctx, js, "local"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "every intent delivered", func() bool { return testenv.StreamMsgs(t, js, queue.IntentStream) == 0 })
	o.mu.Lock()
	distinct := len(o.jti)
	o.mu.Unlock()
	if distinct != n || o.accepted() != n {
		t.Fatalf("%d distinct jti, %d accepted, want %d each", distinct, o.accepted(), n)
	}
	count, sum := histogram(t, reg, "setrelay_attempts_per_delivery")
	if count != n || sum != n {
		t.Fatalf("attempts histogram count %v sum %v: sign failures were counted as attempts", count, sum)
	}
	if d := testenv.StreamMsgs(t, js, queue.DLQStream); d != 0 {
		t.Fatalf("%d dead letters, want 0", d)
	}
}

// metricSum adds up a counter's series whose labels include value.
func metricSum(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
