package queue_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

// Both benchmarks publish the same payloads (pre-encoded intents with unique
// ids) over TCP loopback to an embedded JetStream with the intents stream
// provisioned, so the ratio BatchPublish/RawPublishAsync is the cost of the
// batch publisher's window, ordering and result reporting. Compare them in
// one run:
//
//	go test -run '^$' -bench 'BatchPublish|RawPublishAsync' -benchtime 200000x ./queue

const benchWindow = 256

func benchPayloads(b *testing.B, n int) (ids []string, data [][]byte) {
	b.Helper()
	ids = make([]string, n)
	data = make([][]byte, n)
	for i := range ids {
		ids[i] = itoa(i) + "-" + b.Name()
		data[i] = intentBytes(b, ids[i])
	}
	return ids, data
}

func BenchmarkRawPublishAsync(b *testing.B) {
	env := startEnv(b, testConfig(b), "govuk")
	js, err := jetstream.New(env.nc, jetstream.WithPublishAsyncMaxPending(benchWindow))
	if err != nil {
		b.Fatal(err)
	}
	ids, data := benchPayloads(b, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		_, err := js.PublishAsync(queue.IntentSubject, data[i], jetstream.WithMsgID(ids[i]))
		if err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not complete")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	if n := streamMsgs(b, env.js, queue.IntentStream); n != uint64(b.N) {
		b.Fatalf("stored %d of %d", n, b.N)
	}
}

func BenchmarkBatchPublish(b *testing.B) {
	env := startEnv(b, testConfig(b), "govuk")
	var failed int
	bp, err := queue.NewBatchPublisher(env.nc, queue.BatchOptions{Window: benchWindow, OnResult: func(r queue.BatchResult) {
		if r.Err != nil {
			failed++
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	ids, data := benchPayloads(b, b.N)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := bp.Add(ctx, ids[i], data[i], int64(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := bp.Close(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.StopTimer()
	if failed != 0 {
		b.Fatalf("%d failed", failed)
	}
	if n := streamMsgs(b, env.js, queue.IntentStream); n != uint64(b.N) {
		b.Fatalf("stored %d of %d", n, b.N)
	}
}
