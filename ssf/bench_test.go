package ssf_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/ssf"
)

// BenchmarkPollVsPush measures, in one run on one JetStream, the SETs/s a
// push stream reaches (the dispatcher's worker pool, 8 pushes in flight,
// pushing over TLS to a receiver that accepts at once) and the SETs/s one receiver polling with
// maxEvents 100 reaches, acknowledging each batch with the next poll. The
// issue's target is poll_per_push >= 1.
//
//	go test ./ssf/ -run '^$' -bench PollVsPush -benchtime 1x
func BenchmarkPollVsPush(b *testing.B) {
	const n = 10000
	for b.Loop() {
		rcv := newPushReceiver(b)
		x := newTX(b, txOptions{RootCAs: rcv.roots(), PollAckWait: time.Minute, MaxPollWait: time.Second, PushConcurrency: 8})
		startDispatcher(b, x)
		var push map[string]any
		x.must(201, "POST", "/ssf/streams", tokenA, map[string]any{
			"events_requested": []string{caepType},
			"delivery":         map[string]any{"method": ssf.MethodPush, "endpoint_url": rcv.srv.URL + "/events"},
		}, &push)
		pollID := x.createPoll(tokenB, caepType)["stream_id"].(string)
		time.Sleep(200 * time.Millisecond) // the dispatcher starts the push pool

		ins := make([]*intent.Intent, n)
		for i := range ins {
			ins[i] = sessionRevoked(idN("bench", i), fmt.Sprintf("u%d@example.com", i%1000))
		}
		start := time.Now()
		x.publish(ins...)
		for rcv.count() < n {
			time.Sleep(5 * time.Millisecond)
		}
		pushRate := float64(n) / time.Since(start).Seconds()

		start = time.Now()
		got := 0
		var acks []string
		for got < n {
			r := x.poll(tokenB, pollID, map[string]any{"maxEvents": 100, "ack": acks})
			acks = acks[:0]
			for jti := range r.Sets {
				acks = append(acks, jti)
			}
			got += len(r.Sets)
		}
		x.poll(tokenB, pollID, map[string]any{"maxEvents": 0, "ack": acks})
		pollRate := float64(n) / time.Since(start).Seconds()
		b.ReportMetric(pushRate, "push_SETs/s")
		b.ReportMetric(pollRate, "poll_SETs/s")
		b.ReportMetric(pollRate/pushRate, "poll_per_push")
	}
}
