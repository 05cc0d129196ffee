package keysource

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/signer"
)

// benchPayload is the size of a typical SET's claims.
var benchPayload = []byte(`{"iss":"https://issuer.example/","iat":1764460800,"jti":"5e4a2c1d-7f0e-4c52-9d3a-1a2b3c4d5e6f","aud":"https://rcv.example/","events":{"https://schemas.openid.net/secevent/risc/event-type/account-disabled":{"subject":{"format":"email","email":"user@example.com"},"reason":"hijacking"}}}`)

// signsPerSecond signs n SETs with sg from c goroutines and returns the rate.
func signsPerSecond(b *testing.B, sg *signer.Signer, n, c int) float64 {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if _, err := sg.Sign(benchPayload, true); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func openSigner(b *testing.B, kc config.Key, o Options) *signer.Signer {
	b.Helper()
	k, err := Open(context.Background(), kc, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = k.Close() })
	sg, err := Signer(k, kc, nil, o)
	if err != nil {
		b.Fatal(err)
	}
	return sg
}

// BenchmarkSoftHSMvsFileRS256 measures, in one run, RS256 SETs/s with a
// key on SoftHSM against the same work with a file key, both from
// 8 goroutines (a worker pool's share of a 2-core machine), and reports
// the ratio (goal: at least 0.8).
//
//	go test ./keysource/ -run '^$' -bench SoftHSMvsFile -benchtime 2000x
func BenchmarkSoftHSMvsFileRS256(b *testing.B) {
	if !PKCS11Supported {
		b.Skip("built without cgo")
	}
	h := testenv.StartSoftHSM(b)
	dir := b.TempDir()
	file, _ := testenv.WriteKey(b, dir, jose.RS256, "file-rs")
	fileSigner := openSigner(b, config.Key{ID: "file-rs", Alg: "RS256", File: file}, Options{})
	tok := config.PKCS11Key{Module: h.Module, TokenLabel: h.TokenLabel, KeyLabel: fmt.Sprintf("bench-%d", time.Now().UnixNano()), PinFile: h.PINFile}
	id, err := GeneratePKCS11(GeneratePKCS11Request{Alg: jose.RS256, Token: tok}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	tok.KeyID = id
	const c = 8
	hsmSigner := openSigner(b, config.Key{ID: "hsm-rs", Alg: "RS256", PKCS11: &tok}, Options{Sessions: c})
	b.ResetTimer()
	fileRate := signsPerSecond(b, fileSigner, b.N, c)
	hsmRate := signsPerSecond(b, hsmSigner, b.N, c)
	b.StopTimer()
	b.ReportMetric(fileRate, "file_SETs/s")
	b.ReportMetric(hsmRate, "softhsm_SETs/s")
	b.ReportMetric(hsmRate/fileRate, "softhsm/file")
}

// BenchmarkKMSParallel20ms adds 20 ms to every KMS call (a real proxy in
// front of local-kms) and measures ES256 SETs/s at several concurrencies
// against the ideal concurrency / 20 ms: signing must not serialise.
//
//	go test ./keysource/ -run '^$' -bench KMSParallel -benchtime 400x
func BenchmarkKMSParallel20ms(b *testing.B) {
	lk := testenv.StartLocalKMS(b)
	proxy := testenv.StartKMSProxy(b, lk.URL)
	arn, err := GenerateKMS(context.Background(), GenerateKMSRequest{Alg: jose.ES256, Region: lk.Region, Endpoint: lk.URL})
	if err != nil {
		b.Fatal(err)
	}
	const latency = 20 * time.Millisecond
	// The CPU bound: the same work at the highest concurrency without the
	// added latency (the emulator, the SDK's request signing and JSON share
	// the machine's cores).
	b.Run("c=64/no-latency", func(b *testing.B) {
		kc := config.Key{ID: "kms-es", Alg: "ES256", KMS: &config.KMSKey{Provider: "aws", KeyID: arn, Region: lk.Region, Endpoint: proxy.URL}}
		sg := openSigner(b, kc, Options{Sessions: 64})
		b.ResetTimer()
		b.ReportMetric(signsPerSecond(b, sg, b.N, 64), "SETs/s")
	})
	for _, c := range []int{1, 8, 32, 64} {
		b.Run(fmt.Sprintf("c=%d", c), func(b *testing.B) {
			kc := config.Key{ID: "kms-es", Alg: "ES256", KMS: &config.KMSKey{Provider: "aws", KeyID: arn, Region: lk.Region, Endpoint: proxy.URL}}
			sg := openSigner(b, kc, Options{Sessions: c})
			proxy.Latency.Store(int64(latency))
			defer proxy.Latency.Store(0)
			b.ResetTimer()
			rate := signsPerSecond(b, sg, b.N, c)
			b.StopTimer()
			ideal := float64(c) / latency.Seconds()
			b.ReportMetric(rate, "SETs/s")
			b.ReportMetric(ideal, "ideal_SETs/s")
			b.ReportMetric(rate/ideal, "share_of_ideal")
		})
	}
}
