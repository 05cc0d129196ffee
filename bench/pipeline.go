package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/signer"
)

// Names of the benchmark's fixed configuration.
const (
	receiverName = "bench"
	issuer       = "https://transmitter.example.com/ssf"
	audience     = "https://receiver.example.org/events/endpoint"
	keyID        = "bench-2026-01"
	clientID     = "bench-client"
	clientSecret = "bench-secret-not-a-real-one"
)

// PipelineOptions configure one in-process setrelay run.
type PipelineOptions struct {
	// Alg is the signing algorithm (ES256, RS256, EdDSA).
	Alg jose.SignatureAlgorithm
	// Workers is worker.concurrency.
	Workers int
	// Verify puts the conformance-checking development receiver (package
	// receiver) behind the endpoint instead of the plain 202 handler. Its
	// own verification then costs CPU in this process, so figures taken
	// with it are not comparable with the baseline's.
	Verify bool
	// LogOutput receives the relay's JSON logs at info, as in production
	// (nil: io.Discard). The encoding cost is paid either way.
	LogOutput io.Writer
	// Partitions, when positive, gives the receiver ordering: subject
	// with that many partitions (bench/ordering.go).
	Partitions int
	// Subjects, when positive, spreads the intents over that many
	// subjects and publishes each on its slot subject, as queue.Publisher
	// does; zero keeps one subject on the bare setrelay.intent (the
	// unordered path as it was before per-subject ordering).
	Subjects int
}

// Pipeline is setrelay assembled by relay.Start from a configuration, as
// 'setrelay run' assembles it: embedded JetStream on file storage in a
// temporary directory, the worker pool with validation, Prometheus metrics
// on a real registry, zap JSON logging at info, and a push client that gets
// an OAuth token from the receiver's token endpoint once. The receiver is
// an in-process loopback HTTP server.
type Pipeline struct {
	opts  PipelineOptions
	dir   string
	svc   *relay.Service
	js    jetstream.JetStream
	rcv   *sink
	ln    net.Listener
	http  *http.Server
	runCh chan error
	stop  context.CancelFunc
	polls int // stream info requests made by WaitDrained
}

// NewPipeline brings setrelay up (everything but the worker pool, which
// Start runs) and the loopback receiver.
func NewPipeline(ctx context.Context, opts PipelineOptions) (_ *Pipeline, err error) {
	if opts.Workers <= 0 {
		opts.Workers = config.DefaultConcurrency
	}
	if opts.Alg == "" {
		opts.Alg = jose.ES256
	}
	dir, err := os.MkdirTemp("", "setrelay-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: temp dir: %w", err)
	}
	p := &Pipeline{opts: opts, dir: dir}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	key, err := signer.GenerateKey(opts.Alg, keyID)
	if err != nil {
		return nil, fmt.Errorf("bench: generate key: %w", err)
	}
	pemBytes, err := key.PrivatePEM()
	if err != nil {
		return nil, fmt.Errorf("bench: encode key: %w", err)
	}
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		return nil, fmt.Errorf("bench: write key: %w", err)
	}

	p.rcv = &sink{}
	if opts.Verify {
		jwks := signer.JWKS(key)
		rc, err := receiver.New(receiver.Config{
			ClientID: clientID, ClientSecret: clientSecret,
			Issuer: issuer, Audience: audience, Keys: &jwks,
			Quiet: true,
		}, zap.NewNop())
		if err != nil {
			return nil, fmt.Errorf("bench: conformance receiver: %w", err)
		}
		p.rcv.next = rc.Handler()
	}
	p.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: receiver listener: %w", err)
	}
	p.http = &http.Server{Handler: p.rcv, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.http.Serve(p.ln) }() // ends with ErrServerClosed in Close
	base := "http://" + p.ln.Addr().String()

	cfg := config.Defaults()
	cfg.Issuer = issuer
	cfg.Keys = []config.Key{{ID: keyID, File: keyFile, Alg: string(opts.Alg)}}
	cfg.NATS.StoreDir = filepath.Join(dir, "jetstream")
	cfg.NATS.Listen = "127.0.0.1:-1"
	cfg.Worker.Concurrency = opts.Workers
	cfg.Ops.Listen = "127.0.0.1:0"
	cfg.Receivers = []config.Receiver{{
		Name:         receiverName,
		Endpoint:     base + "/events",
		Audience:     config.Audience{audience},
		Key:          keyID,
		Subject:      config.PlacementSubID,
		InsecureHTTP: true, // loopback, in this process
		Auth: config.Auth{
			TokenURL:     base + "/token",
			ClientID:     clientID,
			ClientSecret: config.Secret(clientSecret),
			AuthStyle:    config.AuthStyleBasic,
		},
	}}
	if opts.Partitions > 0 {
		cfg.Receivers[0].Ordering, cfg.Receivers[0].Partitions = config.OrderingSubject, opts.Partitions
	}
	cfg.FillDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bench: configuration: %w", err)
	}

	w := opts.LogOutput
	if w == nil {
		w = io.Discard
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(zapcore.AddSync(w)), zap.InfoLevel))

	p.svc, err = relay.Start(ctx, cfg, log, prometheus.NewRegistry())
	if err != nil {
		return nil, fmt.Errorf("bench: start relay: %w", err)
	}
	p.js = p.svc.JetStream()
	return p, nil
}

// Publish stores n intents and waits until JetStream has acknowledged them
// all. The intents are asynchronously published, with Nats-Msg-Id set as
// queue.Publisher sets it. first numbers the ids, so successive calls do not
// collide in the duplicate window.
func (p *Pipeline) Publish(ctx context.Context, first, n int) error {
	return publishWindowed(ctx, first, n, func(i int) (jetstream.PubAckFuture, error) {
		return publishIntent(p.js, i, p.opts.Subjects)
	})
}

// publishWindowed publishes intents first..first+n-1 with publish, at most
// a window of them unacknowledged, and waits for every acknowledgement.
func publishWindowed(ctx context.Context, first, n int, publish func(i int) (jetstream.PubAckFuture, error)) error {
	const window = 4096
	pending := make([]jetstream.PubAckFuture, 0, window)
	wait := func() error {
		for _, f := range pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("bench: publish: %w", err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pending = pending[:0]
		return nil
	}
	for i := first; i < first+n; i++ {
		f, err := publish(i)
		if err != nil {
			return err
		}
		pending = append(pending, f)
		if len(pending) == window {
			if err := wait(); err != nil {
				return err
			}
		}
	}
	return wait()
}

// publishIntent publishes the i-th benchmark intent asynchronously, with
// Nats-Msg-Id set as queue.Publisher sets it. With subjects > 0 it is about
// one of that many subjects, on that subject's slot; otherwise it goes on
// the bare intent subject.
func publishIntent(js jetstream.JetStream, i, subjects int) (jetstream.PubAckFuture, error) {
	id := IntentID(i)
	in, subject := Intent(id), queue.IntentSubject
	if subjects > 0 {
		in.Subject = map[string]any{"format": "email", "email": "user" + strconv.Itoa(i%subjects) + "@example.com"}
		subject = queue.IntentSubjectFor(in.Subject)
	}
	data, err := queue.Encode(in, intent.Options{})
	if err != nil {
		return nil, fmt.Errorf("bench: encode intent: %w", err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	f, err := js.PublishMsgAsync(msg)
	if err != nil {
		return nil, fmt.Errorf("bench: publish: %w", err)
	}
	return f, nil
}

// IntentID is the id of the i-th benchmark intent.
func IntentID(i int) string { return "bench-" + strconv.Itoa(i) }

// Intent is a realistic ~500-byte intent, the same event the baseline
// sends: a CAEP session-revoked with an email subject, admin and user
// reasons, the initiating entity and the event time.
func Intent(id string) *intent.Intent {
	occurred := time.Unix(1767225599, 0).UTC()
	return &intent.Intent{
		ID:      id,
		Type:    "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice.user@example.com"},
		Event: map[string]any{
			"initiating_entity": "policy",
			"reason_admin":      map[string]any{"en": "Landspeed Policy Violation: C076E82F"},
			"reason_user":       map[string]any{"en": "Access attempt from multiple regions."},
			"event_timestamp":   occurred.Unix(),
		},
		OccurredAt: &occurred,
		Txn:        "8675309-" + id + "-4d7a1c0e-2b0e-4f51-9a6e-6e0b7a2f1d33",
	}
}

// Start runs the worker pool in the background.
func (p *Pipeline) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	p.stop = cancel
	p.runCh = make(chan error, 1)
	svc := p.svc
	go func() { p.runCh <- svc.Run(ctx) }()
}

// Left is how many intents the stream still holds. The stream has Interest
// retention and one consumer, so an intent leaves it when it is acked.
func (p *Pipeline) Left(ctx context.Context) (uint64, error) {
	s, err := p.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		return 0, fmt.Errorf("bench: stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: stream info: %w", err)
	}
	return info.State.Msgs, nil
}

// WaitDrained polls, every 2 ms as the baseline does, until the stream is
// empty, calling sample (if not nil) about every 100 ms.
func (p *Pipeline) WaitDrained(ctx context.Context, sample func()) error {
	last := time.Now()
	for {
		p.polls++
		left, err := p.Left(ctx)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		if sample != nil && time.Since(last) >= 100*time.Millisecond {
			sample()
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d intents left: %w", left, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// waitDelivered waits until the receiver has accepted n SETs. A run that
// stalls is caught by the caller's context.
func (p *Pipeline) waitDelivered(ctx context.Context, n int64) error {
	for p.Delivered() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d SETs delivered: %w", p.Delivered(), n, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// Delivered is how many SETs the receiver answered 202 to.
func (p *Pipeline) Delivered() int64 { return p.rcv.accepted.Load() }

// TokenRequests is how many token requests the receiver got.
func (p *Pipeline) TokenRequests() int64 { return p.rcv.tokens.Load() }

// Close stops the pool (the relay then drains NATS and stops the embedded
// server), the receiver, and removes the temporary directory.
func (p *Pipeline) Close() error {
	var errs []error
	if p.stop != nil {
		p.stop()
		if err := <-p.runCh; err != nil {
			errs = append(errs, err)
		}
		p.stop = nil
	} else if p.svc != nil {
		// Started but never run: Run with a cancelled context shuts
		// everything down in order.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.svc.Run(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	p.svc = nil
	if p.http != nil {
		_ = p.http.Close()
	}
	if p.dir != "" {
		if err := os.RemoveAll(p.dir); err != nil {
			errs = append(errs, err)
		}
		p.dir = ""
	}
	return errors.Join(errs...)
}

// ThroughputResult is one measured drain of a pre-published backlog.
type ThroughputResult struct {
	Alg          jose.SignatureAlgorithm
	Workers, N   int
	Secs         float64
	SetsPerSec   float64
	CPUPerSetUS  float64 // CPU time (user+system, whole process) per delivered SET
	CPUUtil      float64 // cores this process used
	ForeignUtil  float64 // cores other processes used meanwhile: high means noise
	Delivered    int64
	TokenFetches int64
	PeakRSSKB    int64 // VmHWM after the run (whole process, cumulative)
	// NATSMsgsPerSet is what the relay's NATS connection sent per SET
	// during the drain: one ack each, plus pull requests and the rest. A
	// pull request per message costs the server as much again.
	NATSMsgsPerSet float64
	// AllocsPerSet and BytesPerSet are the heap allocations of the whole
	// process (embedded server and receiver included) per SET during the
	// drain, GCPerSet the collections per 1,000 SETs and GCCPUPerSetUS
	// the runtime's estimate of the collector's CPU per SET. Unlike CPU
	// time they hardly move with the machine's load, so they show what a
	// change did where CPU per SET cannot on a shared machine.
	AllocsPerSet, BytesPerSet float64
	GCPer1000, GCCPUPerSetUS  float64
}

// String is the RESULT line.
func (r ThroughputResult) String() string {
	return fmt.Sprintf("RESULT setrelay alg=%s workers=%d n=%d secs=%.3f msgs_per_s=%.0f total_cpu_us_per_msg=%.1f cpu_util=%.2f foreign_cpu_util=%.2f delivered=%d token_fetches=%d nats_msgs_per_set=%.2f allocs_per_set=%.0f bytes_per_set=%.0f gc_per_1000=%.2f gc_cpu_us_per_msg=%.1f peak_rss_kb=%d",
		r.Alg, r.Workers, r.N, r.Secs, r.SetsPerSec, r.CPUPerSetUS, r.CPUUtil, r.ForeignUtil, r.Delivered, r.TokenFetches, r.NATSMsgsPerSet,
		r.AllocsPerSet, r.BytesPerSet, r.GCPer1000, r.GCCPUPerSetUS, r.PeakRSSKB)
}

// Throughput pre-publishes n intents, then runs the pool and measures it
// until the stream is empty: wall time, this process's CPU time (the
// embedded server and the receiver included, as in the baseline's
// one-process mode) and the machine's. With cpuprofile set, the measured
// phase is profiled into that file.
func Throughput(ctx context.Context, opts PipelineOptions, n int, cpuprofile string) (ThroughputResult, error) {
	res := ThroughputResult{Alg: opts.Alg, Workers: opts.Workers, N: n}
	p, err := NewPipeline(ctx, opts)
	if err != nil {
		return res, err
	}
	defer p.Close()
	res.Workers = p.opts.Workers
	if err := p.Publish(ctx, 0, n); err != nil {
		return res, err
	}
	runtime.GC() // start the measurement without the publish phase's garbage
	stopProfile := func() {}
	if cpuprofile != "" {
		if stopProfile, err = startProfile(cpuprofile); err != nil {
			return res, err
		}
		defer stopProfile()
	}
	out0, polls0 := p.svc.NATSOutMsgs(), p.polls
	m0, rt0 := takeMeter(), readRuntime()
	p.Start()
	// As the baseline does, count deliveries first and only then poll the
	// stream until the acks have emptied it: polling it every 2 ms during
	// the whole run would cost this process and the server CPU (a stream
	// info request and its JSON answer each time) that the baseline does
	// not spend.
	if err := p.waitDelivered(ctx, int64(n)); err != nil {
		return res, err
	}
	if err := p.WaitDrained(ctx, nil); err != nil {
		return res, err
	}
	d, rt := takeMeter().since(m0), readRuntime().since(rt0)
	// Less the stream info requests of WaitDrained.
	res.NATSMsgsPerSet = float64(p.svc.NATSOutMsgs()-out0-uint64(p.polls-polls0)) / float64(n)
	stopProfile()
	res.Secs = d.wall.Seconds()
	res.SetsPerSec = float64(n) / res.Secs
	res.CPUPerSetUS = d.self.Seconds() * 1e6 / float64(n)
	res.CPUUtil = d.self.Seconds() / res.Secs
	res.ForeignUtil = d.foreign().Seconds() / res.Secs
	res.AllocsPerSet = float64(rt.allocs) / float64(n)
	res.BytesPerSet = float64(rt.bytes) / float64(n)
	res.GCPer1000 = float64(rt.cycles) * 1000 / float64(n)
	res.GCCPUPerSetUS = rt.gcCPU * 1e6 / float64(n)
	res.Delivered = p.Delivered()
	res.TokenFetches = p.TokenRequests()
	if err := p.Close(); err != nil {
		return res, err
	}
	res.PeakRSSKB = procStatusKB("VmHWM")
	if res.Delivered < int64(n) {
		return res, fmt.Errorf("bench: receiver accepted %d SETs, want %d", res.Delivered, n)
	}
	return res, nil
}

// startProfile starts the CPU profiler into path; stop is idempotent.
func startProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: cpu profile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
