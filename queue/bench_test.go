package queue_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/internal/testenv"
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

// BenchmarkDuplicateWindowBytesPerID measures what the intents stream's
// duplicate window costs the server's heap per intent id (README,
// nats.duplicate_window): it publishes b.N ids of UUID length, purges the
// messages (the window keeps the ids) and reports the heap's growth per id.
//
//	go test -run '^$' -bench DuplicateWindowBytesPerID -benchtime 200000x ./queue
func BenchmarkDuplicateWindowBytesPerID(b *testing.B) {
	j := testenv.StartJetStream(b, queue.Config{})
	ctx := context.Background()
	s, err := j.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "DD", Subjects: []string{"dd"},
		Duplicates: queue.DefaultDuplicateWindow, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("0198c1f2-7a3b-7c4d-9e5f-%012d", i)
		if _, err := j.JS.PublishAsync("dd", []byte("x"), jetstream.WithMsgID(id)); err != nil {
			b.Fatal(err)
		}
	}
	<-j.JS.PublishAsyncComplete()
	b.StopTimer()
	if err := s.Purge(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(int64(heap())-int64(before))/float64(b.N), "heap-bytes/id")
}
