package queue_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/queue"
)

// Both benchmarks publish the same payloads (encoded intents with unique ids,
// built on the fly so that memory reflects the publisher, not a prepared
// slice) over TCP loopback to an embedded JetStream with the intents stream
// provisioned. The msgs/s ratio BatchPublish/RawPublishAsync is the cost of
// the batch publisher's window, ordering and per-intent results; peak-heap-MB
// at two sizes shows whether memory stays flat. Compare them in one run:
//
//	go test -run '^$' -bench 'BatchPublish|RawPublishAsync' -benchtime 200000x ./queue

const benchWindow = 256

func benchPayload(i int) (string, []byte) {
	id := "bench-" + strconv.Itoa(i)
	return id, []byte(`{"id":"` + id + `","type":"caep.session-revoked","subject":{"email":"alice@example.com","format":"email"}}`)
}

// heapPeak samples the live heap every few thousand messages.
type heapPeak struct{ peak uint64 }

func (h *heapPeak) sample(i int) {
	if i%8192 != 0 {
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	h.peak = max(h.peak, ms.HeapInuse)
}

func (h *heapPeak) report(b *testing.B, start time.Time) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	b.ReportMetric(float64(h.peak)/(1<<20), "peak-heap-MB")
}

func BenchmarkRawPublishAsync(b *testing.B) {
	env := startEnv(b, testConfig(b), "govuk")
	js, err := jetstream.New(env.nc, jetstream.WithPublishAsyncMaxPending(benchWindow))
	if err != nil {
		b.Fatal(err)
	}
	var heap heapPeak
	b.ReportAllocs()
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		id, data := benchPayload(i)
		if _, err := js.PublishAsync(queue.IntentSubject, data, jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
		heap.sample(i)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("acks did not complete")
	}
	heap.report(b, start)
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
	ctx := context.Background()
	var heap heapPeak
	b.ReportAllocs()
	runtime.GC()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		id, data := benchPayload(i)
		if err := bp.Add(ctx, id, data, int64(i)); err != nil {
			b.Fatal(err)
		}
		heap.sample(i)
	}
	if err := bp.Close(ctx); err != nil {
		b.Fatal(err)
	}
	heap.report(b, start)
	b.StopTimer()
	if failed != 0 {
		b.Fatalf("%d failed", failed)
	}
	if n := streamMsgs(b, env.js, queue.IntentStream); n != uint64(b.N) {
		b.Fatalf("stored %d of %d", n, b.N)
	}
}
