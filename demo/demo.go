// Package demo runs setrelay end to end in one process, so that a newcomer
// sees the whole job in one command (`setrelay demo`): an embedded JetStream
// in a temporary directory, a generated ES256 key, the relay assembled from a
// configuration exactly as `setrelay run` assembles it, and the strict
// development receiver verifying every SET against the relay's own
// /jwks.json. It publishes sample intents, including a few bad ones that
// must be dead-lettered, waits until each has settled, and checks the
// outcome: every good intent delivered and verified, every bad one
// dead-lettered for the expected reason.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// Names and identities used by the demo. They are constants so that the
// printed SET and the tests can refer to them.
const (
	ReceiverName = "demo-receiver"
	Issuer       = "https://transmitter.setrelay.example/"
	Audience     = "https://receiver.setrelay.example/"
	KeyID        = "demo-es256"
	ClientID     = "setrelay-demo"
)

// Defaults for Options.
const (
	DefaultCount   = 300
	DefaultTimeout = 45 * time.Second
	DefaultFaults  = 0.03 // share of pushes answered 500 or 429
)

// ErrCheckFailed is returned by Run (wrapped, with the details) when the
// demo ran but its outcome is wrong: a good intent not delivered or not
// verified, or a bad one not dead-lettered for the expected reason.
var ErrCheckFailed = errors.New("demo check failed")

// Options configure Run. The zero value is the demo of `setrelay demo`.
type Options struct {
	// Count is the number of good intents (default DefaultCount).
	Count int
	// Timeout bounds the wait for every intent to settle (default
	// DefaultTimeout).
	Timeout time.Duration
	// FaultRate is the share of pushes the receiver answers with a 500 or
	// a 429 with Retry-After, so that retries show; default DefaultFaults,
	// negative for none.
	FaultRate float64
	// Seed makes the injected faults reproducible (default 1).
	Seed uint64
	// Keep leaves everything running after the summary, with the ops
	// endpoints up, until ctx is cancelled.
	Keep bool
	// TTY draws progress as one line rewritten in place; otherwise
	// progress is printed as plain lines.
	TTY bool
	// Quiet prints nothing to out (the caller prints the Summary, as JSON
	// for instance).
	Quiet bool
	// Log receives the relay's and the receiver's logs (default none).
	Log *zap.Logger
	// Key, if set, is the key the demo signs with instead of a generated
	// ES256 file key: a keys[] entry of a configuration, so a key in an
	// HSM or KMS can be tried end to end (`setrelay demo --key-config`).
	Key *config.Key
}

func (o Options) withDefaults() Options {
	if o.Count <= 0 {
		o.Count = DefaultCount
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FaultRate == 0 {
		o.FaultRate = DefaultFaults
	}
	if o.FaultRate < 0 {
		o.FaultRate = 0
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	return o
}

// Run runs the demo and returns its summary. Progress, the summary table and
// one decoded SET are written to out (unless Options.Quiet). The error is
// nil only when every good intent was delivered and verified by the
// receiver and every bad intent was dead-lettered with the expected reason;
// a wrong outcome is reported as an error wrapping ErrCheckFailed, with the
// Summary filled in. With Options.Keep, Run returns only after ctx is
// cancelled.
func Run(ctx context.Context, opts Options, out io.Writer) (Summary, error) {
	opts = opts.withDefaults()
	if opts.Quiet {
		out = io.Discard
	}
	dir, err := os.MkdirTemp("", "setrelay-demo-")
	if err != nil {
		return Summary{}, fmt.Errorf("demo: temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	env, err := start(ctx, opts, dir)
	if err != nil {
		return Summary{}, err
	}
	defer env.stop()

	keyDesc := fmt.Sprintf("ES256 key %q", KeyID)
	if opts.Key != nil {
		keyDesc = fmt.Sprintf("%s key %q (%s)", opts.Key.Alg, opts.Key.ID, opts.Key.Source())
	}
	fmt.Fprintf(out, "setrelay demo: embedded JetStream %s, receiver %s, %s\n",
		env.svc.ClientURL(), env.baseURL, keyDesc)
	fmt.Fprintf(out, "publishing %d intents (4 event types) and %d bad ones...\n", opts.Count, len(badIntents()))

	pub, err := env.publish(ctx, opts.Count)
	if err != nil {
		return Summary{}, err
	}
	if err := env.wait(ctx, opts, pub, out); err != nil {
		return Summary{}, err
	}
	sum, err := env.summarize(ctx, pub)
	if err != nil {
		return sum, err
	}
	printSummary(out, sum)

	var runErr error
	if !sum.OK {
		runErr = fmt.Errorf("%w: %v", ErrCheckFailed, sum.Problems)
	}
	if opts.Keep && ctx.Err() == nil {
		fmt.Fprintf(out, "\n--keep: still running; Ctrl-C to stop.\n")
		fmt.Fprintf(out, "  ops      http://%s/metrics  /healthz  /readyz  /jwks.json\n", env.svc.OpsAddr())
		fmt.Fprintf(out, "  receiver %s/stats  (token %s/token, events %s/events)\n", env.baseURL, env.baseURL, env.baseURL)
		fmt.Fprintf(out, "  NATS     %s  (publish intents on %q)\n", env.svc.ClientURL(), queue.IntentSubject)
		<-ctx.Done()
	}
	fmt.Fprintln(out, "stopping (the workers' idle pull requests end within a few seconds)...")
	env.stop()
	return sum, runErr
}

// env is one running demo: relay, receiver and the state to check them.
type env struct {
	svc     *relay.Service
	rcv     *receiver.Receiver
	reg     *prometheus.Registry
	js      jetstream.JetStream
	http    *http.Server
	baseURL string
	capture *capture

	cancel context.CancelFunc // stops the relay's worker pool
	done   chan error         // the relay's Run result
	once   sync.Once
}

// start generates the key, builds the configuration and brings up the relay
// and the receiver. The receiver's listener exists before the relay starts
// (its URL is in the configuration) but the receiver itself is built after,
// because it verifies against the relay's /jwks.json.
func start(ctx context.Context, opts Options, dir string) (*env, error) {
	var keyFile string
	if opts.Key == nil {
		key, err := signer.GenerateKey(jose.ES256, KeyID)
		if err != nil {
			return nil, fmt.Errorf("demo: generate key: %w", err)
		}
		pemBytes, err := key.PrivatePEM()
		if err != nil {
			return nil, fmt.Errorf("demo: encode key: %w", err)
		}
		keyFile = filepath.Join(dir, KeyID+".pem")
		if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
			return nil, fmt.Errorf("demo: write key: %w", err)
		}
	}
	secret, err := randomSecret()
	if err != nil {
		return nil, err
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("demo: receiver listener: %w", err)
	}
	base := "http://" + ln.Addr().String()
	cfg := Config(filepath.Join(dir, "jetstream"), keyFile, base, secret)
	if opts.Key != nil {
		cfg.Keys = []config.Key{*opts.Key}
		cfg.Receivers[0].Key = opts.Key.ID
	}
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: configuration: %w", err)
	}

	e := &env{reg: prometheus.NewRegistry(), baseURL: base, done: make(chan error, 1)}
	e.svc, err = relay.Start(ctx, cfg, opts.Log.Named("relay"), e.reg)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("demo: start relay: %w", err)
	}
	e.js = e.svc.JetStream()

	half := opts.FaultRate / 2
	e.rcv, err = receiver.New(receiver.Config{
		ClientID:        ClientID,
		ClientSecret:    secret,
		Issuer:          Issuer,
		Audience:        Audience,
		JWKSURL:         "http://" + e.svc.OpsAddr().String() + "/jwks.json",
		SubjectMode:     receiver.SubjectSubID,
		Quiet:           true,
		Seed:            opts.Seed,
		FailRate:        half,
		Rate429:         half,
		RetryAfter:      time.Second,
		RejectTxnPrefix: RejectTxnPrefix,
	}, opts.Log.Named("receiver"))
	if err != nil {
		ln.Close()
		e.stopRelay()
		return nil, fmt.Errorf("demo: receiver: %w", err)
	}
	seedJTI := set.JTI(SeedIntentID, ReceiverName, "")
	e.capture = &capture{jti: seedJTI}
	e.http = &http.Server{Handler: e.capture.wrap(e.rcv.Handler()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = e.http.Serve(ln) }() // returns http.ErrServerClosed at stop

	// The relay runs on its own context so that stopping it is the demo's
	// decision, after the summary (or after Ctrl-C with --keep).
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	go func() { e.done <- e.svc.Run(rctx) }()
	return e, nil
}

// Config is the relay configuration the demo runs: the embedded JetStream on
// a random loopback port (never 4222, so a real setrelay or nats-server on
// this machine is left alone), ops on a random port, and one receiver
// reached with OAuth client credentials. Retry delays are short so that the
// injected faults cost a second or two, not minutes.
func Config(storeDir, keyFile, receiverURL, clientSecret string) *config.Config {
	kid := true
	return &config.Config{
		Issuer: Issuer,
		Keys:   []config.Key{{ID: KeyID, File: keyFile, Alg: "ES256"}},
		NATS: config.NATS{
			StoreDir:      storeDir,
			Listen:        "127.0.0.1:-1",
			Replicas:      1,
			MaxAckPending: config.DefaultMaxAckPending,
			AckWait:       config.DefaultAckWait,

			DuplicateWindow: config.DefaultDuplicateWindow,
		},
		Worker: config.Worker{Concurrency: 32, GracePeriod: 2 * time.Second, FetchWait: config.DefaultFetchWait},
		Ops:    config.Ops{Listen: "127.0.0.1:0"},
		Log:    config.Log{Level: "warn", Format: "console"},
		Receivers: []config.Receiver{{
			Name:     ReceiverName,
			Endpoint: receiverURL + "/events",
			Audience: config.Audience{Audience},
			Key:      KeyID,
			SendKID:  &kid,
			Subject:  config.PlacementSubID,
			Auth: config.Auth{
				TokenURL:     receiverURL + "/token",
				ClientID:     ClientID,
				ClientSecret: config.Secret(clientSecret),
				AuthStyle:    config.AuthStyleBasic,
			},
			InsecureHTTP:   true, // a loopback receiver in this process
			Timeout:        5 * time.Second,
			ConnectTimeout: 2 * time.Second,
			MaxRetryAfter:  2 * time.Second,
			Retry:          config.Retry{Initial: 100 * time.Millisecond, Max: 2 * time.Second, MaxAttempts: 10, MaxAge: time.Hour},
			Pause:          config.Pause{Threshold: config.DefaultPauseThreshold, Initial: 2 * time.Second, Max: 10 * time.Second},
		}},
	}
}

func randomSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("demo: client secret: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// published is what was sent, to check the outcome against.
type published struct {
	start time.Time
	good  []string             // intent ids, in publish order
	at    map[string]time.Time // publish time per good intent id
	bad   map[uint64]badIntent // by stream sequence
}

func (p *published) total() int { return len(p.good) + len(p.bad) }

// publishers is how many goroutines publish the good intents. Each publish
// waits for JetStream's ack, so a few in parallel keep the stream busy the
// way many producers would.
const publishers = 16

// publish sends the good intents through queue.Publisher (validated as a
// producer's would be) and the bad ones raw, as a broken producer would.
func (e *env) publish(ctx context.Context, n int) (*published, error) {
	pubr := queue.NewPublisher(e.js, intent.Options{})
	p := &published{start: time.Now(), at: make(map[string]time.Time, n), bad: map[uint64]badIntent{}}
	intents := goodIntents(n, p.start)
	at := make([]time.Time, len(intents))
	errs := make([]error, len(intents))
	next := make(chan int)
	var wg sync.WaitGroup
	for range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				at[i] = time.Now()
				if _, err := pubr.Publish(ctx, intents[i]); err != nil {
					errs[i] = fmt.Errorf("demo: publish %s: %w", intents[i].ID, err)
				}
			}
		}()
	}
	for i := range intents {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, in := range intents {
		p.good = append(p.good, in.ID)
		p.at[in.ID] = at[i]
	}
	for _, b := range badIntents() {
		var (
			ack queue.PubAck
			err error
		)
		if b.valid != nil {
			ack, err = pubr.Publish(ctx, b.valid)
		} else {
			ack, err = pubr.PublishRaw(ctx, b.id, b.data, nil)
		}
		if err != nil {
			return nil, fmt.Errorf("demo: publish %s: %w", b.id, err)
		}
		p.bad[ack.Sequence] = b
	}
	return p, nil
}

// stop stops the relay and the receiver. It is safe to call more than once.
func (e *env) stop() {
	e.once.Do(func() {
		e.stopRelay()
		e.rcv.Close() // ends injected hangs so Shutdown need not wait
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.http.Shutdown(ctx)
	})
}

func (e *env) stopRelay() {
	if e.cancel == nil {
		// Started but never run: Run with a cancelled context shuts the
		// service down in order.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = e.svc.Run(ctx)
		return
	}
	e.cancel()
	<-e.done
}
