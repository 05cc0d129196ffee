// Package relay assembles the setrelay service from one configuration: keys
// and signers, NATS (embedded or external), provisioning, push clients, the
// worker pool and the ops server; and takes it down again in order.
package relay

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/fleet"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/ops"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/secret"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/tracing"
	"github.com/setrelay/setrelay/worker"
)

// Timeouts of the shutdown steps after the worker pool has stopped. The
// pool's own grace period (worker.grace_period) comes first.
const (
	// OpsShutdownTimeout bounds waiting for in-flight scrapes and probes.
	OpsShutdownTimeout = 5 * time.Second
	// DrainTimeout bounds flushing the last acks and naks to NATS.
	DrainTimeout = 30 * time.Second
	// provisionTimeout bounds creating streams and consumers. A cluster
	// that is still forming can take a while to place replicated streams;
	// queue.Provision retries until then.
	provisionTimeout = 60 * time.Second
)

// Service is the assembled relay. Start builds it and brings everything up
// except the worker pool; Run runs the pool and then shuts everything down.
// A Service is used once.
type Service struct {
	cfg   *config.Config
	log   *zap.Logger
	srv   *server.Server // nil with an external NATS
	nc    *nats.Conn
	js    jetstream.JetStream
	pool  *worker.Pool
	ops   *ops.Server
	ssf   *ssfService // nil unless ssf.enabled
	keys  []*signer.Key
	url   string
	trace *tracing.Provider
	fleet *fleet.Member                 // nil when no receiver has a fleet-wide limit
	steps []func(context.Context) error // shutdown, in reverse start order

	// bulk is the loopback connection to the embedded server that fetch
	// loops pull through while a backlog drains (queue.ConnectLoopback);
	// nil with an external server or when the listener cannot take it.
	bulk jetstream.JetStream

	signers     map[string]*signer.Signer // by key id, as loaded at start
	signMetrics *signer.Metrics

	mu      sync.Mutex
	clients map[string]*push.Client // each receiver's current push client, for shutdown
}

// Run starts the service from cfg and runs it until ctx is cancelled (the
// first SIGTERM or SIGINT), then shuts down in order: stop pulling and let
// in-flight pushes finish (worker.grace_period), stop the ops server, drain
// the NATS connection so the last acks reach the server, and stop the
// embedded NATS server if there is one. It returns nil after a clean
// shutdown. Metrics are registered on reg.
func Run(ctx context.Context, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry) error {
	s, err := Start(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Start brings up everything but the worker pool: it loads the keys and
// builds one signer per key, starts the embedded NATS server (no nats.url)
// or connects to NATS, provisions the streams and consumers, builds a push
// client per receiver, and starts the ops server. On error, whatever was
// started is stopped again. The caller must call Run.
func Start(ctx context.Context, cfg *config.Config, log *zap.Logger, reg *prometheus.Registry) (_ *Service, err error) {
	if log == nil {
		log = zap.NewNop()
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if cfg.CredentialsUnread() {
		return nil, errors.New("relay: the configuration was loaded with config.QueueOnly, so its receivers' credentials are placeholders; load it with config.Load to deliver")
	}
	s := &Service{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			s.shutdown()
		}
	}()

	sm, err := signer.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	keys, signers, err := loadKeys(ctx, cfg, log, sm)
	if err != nil {
		return nil, err
	}
	s.keys, s.signers, s.signMetrics = keys, signers, sm
	// Closed last: in-flight signatures end with the worker pool, before
	// any shutdown step runs.
	s.steps = append(s.steps, func(context.Context) error { return closeKeys(keys) })

	// Tracing is configured by the OTEL_* environment only (off without
	// it). Its shutdown is the first step, so it runs last and exports the
	// spans of the final deliveries.
	if s.trace, err = tracing.Setup(ctx, push.Version, log); err != nil {
		return nil, err
	}
	s.steps = append(s.steps, s.trace.Shutdown)
	if s.trace.Enabled() {
		log.Info("tracing on: exporting spans as the OTEL_* environment says")
	}

	qcfg := queueConfig(cfg)
	if err := s.connect(ctx, qcfg); err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	if err := queue.Provision(pctx, s.js, qcfg, cfg.ReceiverNames()); err != nil {
		return nil, fmt.Errorf("provision JetStream: %w", err)
	}
	if orphans, err := Orphans(pctx, s.js, cfg); err != nil {
		log.Warn("could not list consumers of removed receivers", zap.Error(err))
	} else {
		warnOrphans(log, cfg, orphans)
	}

	pm, err := push.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("push metrics: %w", err)
	}
	if err := s.joinFleet(pctx, qcfg, reg); err != nil {
		return nil, err
	}
	wcfg := cfg.Pool()
	for i, r := range cfg.Receivers {
		spec, err := s.receiverSpec(pctx, i, r, signers, pm)
		if err != nil {
			return nil, err
		}
		s.limitReceiver(&spec)
		wcfg.Receivers = append(wcfg.Receivers, spec)
	}
	s.steps = append(s.steps, func(context.Context) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.clients {
			c.CloseIdleConnections()
		}
		return nil
	})
	// With only the SSF API enabled there may be no configured receiver,
	// and so no pool: receivers' streams are served by the SSF dispatcher.
	if len(wcfg.Receivers) > 0 {
		s.pool, err = worker.New(wcfg, worker.Deps{JS: s.js, Log: log.Named("worker"), Registerer: reg, Tracer: s.trace.TracerProvider()})
		if err != nil {
			return nil, fmt.Errorf("worker pool: %w", err)
		}
	}

	s.ops, err = ops.New(ops.Config{
		Listen:   cfg.Ops.Listen,
		Registry: reg,
		Ready:    s.readiness(),
		JWKS:     signer.JWKS(keys...),
		Log:      log.Named("ops"),
	})
	if err != nil {
		return nil, err
	}
	if err := s.ops.Start(); err != nil {
		return nil, err
	}
	s.steps = append(s.steps, func(ctx context.Context) error { return s.ops.Shutdown(ctx) })
	if cfg.SSF.Enabled {
		if err := s.startSSF(pctx, signers, pm, reg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// queueConfig is cfg's queue configuration with the NATS_* environment
// applied, except NATS_URL: config.Load has already applied that one, and a
// caller may have overridden the URL since (a --nats-url flag), which must
// win over the environment.
func queueConfig(cfg *config.Config) queue.Config {
	q := cfg.Queue()
	url := q.URL
	q.ApplyEnv()
	q.URL = url
	return q
}

// loadKeys opens every configured key (a file, a PKCS#11 token, a KMS) and
// builds its signer once. A remote key's public half is read here, once, and
// its alg checked against its real type. Every unusable key is reported,
// with its configuration path, in one error. PKCS#11 session pools are sized
// to the worker concurrency, so signing never waits for a session while a
// worker is free.
func loadKeys(ctx context.Context, cfg *config.Config, log *zap.Logger, m *signer.Metrics) ([]*signer.Key, map[string]*signer.Signer, error) {
	var problems []config.Problem
	keys := make([]*signer.Key, 0, len(cfg.Keys))
	signers := make(map[string]*signer.Signer, len(cfg.Keys))
	opts := keysource.Options{Sessions: cfg.Worker.Concurrency}
	for i, kc := range cfg.Keys {
		path := fmt.Sprintf("keys[%d].%s", i, kc.Source())
		k, err := openKeyRetrying(ctx, kc, opts, log, startupKeyRetry)
		if errors.Is(err, signer.ErrTransient) || (err != nil && ctx.Err() != nil) {
			// KMS unreachable or throttled, an HSM busy, for longer than
			// the start-up bound: not a mistake in the configuration
			// (status 2) but a failure to start (status 1) that the
			// supervisor's restart may cure.
			closeKeys(keys)
			return nil, nil, fmt.Errorf("keys[%d] %q: %w", i, kc.ID, err)
		}
		if err != nil {
			msg := err.Error()
			if kc.Source() == "file" && errors.Is(err, fs.ErrNotExist) {
				// The usual first-run mistake: say how to make the key
				// the configuration expects, with its id and algorithm.
				msg += fmt.Sprintf("; create it with `setrelay keys generate --alg %s --id %s --out %s`", kc.Alg, kc.ID, kc.File)
			}
			problems = append(problems, config.Problem{Path: path, Message: msg})
			continue
		}
		for _, w := range k.Warnings {
			log.Warn(w, zap.String("key", kc.ID))
		}
		sg, err := keysource.Signer(k, kc, m, opts)
		if err != nil {
			_ = k.Close()
			problems = append(problems, config.Problem{Path: path, Message: err.Error()})
			continue
		}
		if k.Remote() {
			log.Info("signing key held remotely", zap.String("key", k.ID), zap.String("source", kc.Source()), zap.String("alg", string(k.Alg)))
		}
		keys = append(keys, k)
		signers[kc.ID] = sg
	}
	if len(problems) > 0 {
		closeKeys(keys)
		return nil, nil, &config.Error{Problems: problems}
	}
	return keys, signers, nil
}

// keyRetry bounds how long start-up waits for a key service that answers
// with a transient failure.
type keyRetry struct {
	initial, max time.Duration // backoff between attempts, doubling
	total        time.Duration // give up after this long
}

// startupKeyRetry is the start-up wait for a KMS or HSM. A deploy that
// lands during a short cloud outage, a throttled burst of restarts or a
// network that is still coming up (a sidecar proxy, a VPC endpoint) should
// ride it out rather than crash-loop; an outage longer than two minutes
// exits 1, so the supervisor's restart policy and alerting take over. A
// configuration mistake (a wrong key id, a disabled key, a denied role, an
// alg that does not fit) is not retried: it exits 2 at once.
var startupKeyRetry = keyRetry{initial: time.Second, max: 15 * time.Second, total: 2 * time.Minute}

// openKeyRetrying opens kc, retrying with backoff while the key service
// answers with signer.ErrTransient, for at most b.total. It logs one line
// per retry so that a slow start says what it is waiting for.
func openKeyRetrying(ctx context.Context, kc config.Key, opts keysource.Options, log *zap.Logger, b keyRetry) (*signer.Key, error) {
	start := time.Now()
	delay := b.initial
	for attempt := 1; ; attempt++ {
		k, err := keysource.Open(ctx, kc, opts)
		if !errors.Is(err, signer.ErrTransient) {
			return k, err
		}
		waited := time.Since(start)
		if waited+delay > b.total {
			return nil, fmt.Errorf("the key service still failed after %d attempts over %s at start-up (giving up; a restart retries): %w", attempt, waited.Round(time.Second), err)
		}
		log.Warn("signing key service unavailable at start-up; retrying",
			zap.String("key", kc.ID), zap.String("source", kc.Source()), zap.Int("attempt", attempt),
			zap.Duration("retry_in", delay), zap.Duration("give_up_after", b.total), zap.Error(err))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("start-up cancelled while waiting for the key service: %w", err)
		case <-t.C:
		}
		delay = min(2*delay, b.max)
	}
}

// closeKeys releases remote keys' sessions.
func closeKeys(keys []*signer.Key) error {
	var errs []error
	for _, k := range keys {
		if err := k.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close key %q: %w", k.ID, err))
		}
	}
	return errors.Join(errs...)
}

// connect starts the embedded server or connects to the configured one.
func (s *Service) connect(ctx context.Context, qcfg queue.Config) error {
	if qcfg.URL == "" {
		srv, err := queue.StartEmbedded(qcfg, s.log)
		if err != nil {
			return embeddedConfigError(err)
		}
		s.srv = srv
		s.url = srv.ClientURL()
		s.steps = append(s.steps, func(context.Context) error {
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil
		})
		nc, err := queue.ConnectInProcessAs(srv, qcfg, s.log)
		if err != nil {
			return embeddedConfigError(err)
		}
		s.nc = nc
		if bnc, ok := queue.ConnectLoopback(srv, qcfg, s.log); ok {
			bjs, err := jetstream.New(bnc)
			if err != nil {
				bnc.Close()
			} else {
				s.bulk = bjs
				s.steps = append(s.steps, func(ctx context.Context) error { return drain(ctx, bnc) })
			}
		}
	} else {
		nc, err := queue.Connect(ctx, qcfg, s.log)
		if err != nil {
			return err
		}
		s.nc = nc
		s.url = qcfg.URL
	}
	nc := s.nc
	s.steps = append(s.steps, func(ctx context.Context) error { return drain(ctx, nc) })
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	s.js = js
	return nil
}

// receiverSpec builds the worker's view of one receiver (the i-th): its
// consumer, the signer of its key, its push client, its rate limiter, and
// how to rebuild the last two from the files when it is blocked.
func (s *Service) receiverSpec(ctx context.Context, i int, r config.Receiver, signers map[string]*signer.Signer, pm *push.Metrics) (worker.Receiver, error) {
	spec := s.cfg.WorkerSpec(r)
	spec.Signer = signers[r.Key]
	client, err := s.pushClient(r, pm)
	if err != nil {
		return spec, err
	}
	spec.Pusher = client
	cons, err := s.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(r.Name))
	if err != nil {
		return spec, fmt.Errorf("receiver %q: consumer %s: %w", r.Name, queue.ConsumerName(r.Name), err)
	}
	spec.Consumer = cons
	if s.bulk != nil && !r.Ordered() {
		// Without it the receiver pulls in-process only, which works.
		if bc, err := s.bulk.Consumer(ctx, queue.IntentStream, queue.ConsumerName(r.Name)); err == nil {
			spec.Bulk = bc
		}
	}
	if r.Ordered() {
		n := r.PartitionCount()
		spec.Partitions = make([]jetstream.Consumer, n)
		for part := range n {
			name := queue.PartitionConsumerName(r.Name, part)
			if spec.Partitions[part], err = s.js.Consumer(ctx, queue.IntentStream, name); err != nil {
				return spec, fmt.Errorf("receiver %q: partition consumer %s: %w", r.Name, name, err)
			}
		}
	}
	spec.Hints = worker.Hints{Path: fmt.Sprintf("receivers[%d] (%q)", i, r.Name), SecretFile: r.Auth.ClientSecretFile}
	if spec.Hints.SecretFile == "" {
		spec.Hints.SecretFile = r.Auth.AuthorizationHeaderFile
	}
	var kc config.Key
	for _, k := range s.cfg.Keys {
		if k.ID == r.Key {
			kc = k
		}
	}
	spec.Hints.KeyFile = kc.File
	spec.Reload = func(ctx context.Context) (worker.Signer, worker.Pusher, error) {
		return s.reload(ctx, r, kc, pm)
	}
	return spec, nil
}

// pushClient builds a receiver's push client; its idle connections are
// closed at shutdown.
func (s *Service) pushClient(r config.Receiver, pm *push.Metrics) (*push.Client, error) {
	pc := r.Push()
	// Up to the whole pool may push to one receiver at once; keep that many
	// connections alive rather than churn them.
	if pc.MaxConns == 0 {
		pc.MaxConns = s.cfg.Worker.Concurrency
	}
	client, err := push.New(pc, s.log.Named("push"), pm)
	if err != nil {
		return nil, fmt.Errorf("receiver %q: %w", r.Name, err)
	}
	s.mu.Lock()
	if old := s.clients[r.Name]; old != nil {
		// Replaced by a reload: a blocked receiver has nothing in flight.
		old.CloseIdleConnections()
	}
	if s.clients == nil {
		s.clients = make(map[string]*push.Client)
	}
	s.clients[r.Name] = client
	s.mu.Unlock()
	return client, nil
}

// reload re-reads a blocked receiver's secret files and, for a key in a
// file, the key, and builds a fresh signer and push client from them (with
// a new token), so that fixing a file unblocks the receiver without a
// restart. A KMS or HSM key keeps its signer: the probe's signature asks the
// key service again anyway. Other settings (endpoint, token_url ...) come
// from the configuration loaded at start.
func (s *Service) reload(ctx context.Context, r config.Receiver, kc config.Key, pm *push.Metrics) (worker.Signer, worker.Pusher, error) {
	r, err := r.ReloadSecrets()
	if err != nil {
		return nil, nil, err
	}
	sg := s.signers[kc.ID]
	if kc.Source() == "file" {
		opts := keysource.Options{Sessions: s.cfg.Worker.Concurrency}
		k, err := keysource.Open(ctx, kc, opts)
		if err != nil {
			return nil, nil, fmt.Errorf("receivers %q: key %q: %w", r.Name, kc.ID, err)
		}
		// /jwks.json was encoded at start-up: another key in the file
		// would sign under the published kid with material the JWKS does
		// not hold, and receivers that verify with it would reject every
		// SET. Such a change needs a restart, as for a PKCS#11 key.
		if !s.published(kc.ID, k) {
			return nil, nil, fmt.Errorf("receivers %q: key file %s now holds another key than the one published at /jwks.json as kid %q; restart setrelay to publish the new public key (and hand its PEM to receivers that take one)", r.Name, kc.File, kc.ID)
		}
		if sg, err = keysource.Signer(k, kc, s.signMetrics, opts); err != nil {
			return nil, nil, fmt.Errorf("receivers %q: key %q: %w", r.Name, kc.ID, err)
		}
	}
	client, err := s.pushClient(r, pm)
	if err != nil {
		return nil, nil, err
	}
	return sg, client, nil
}

// published reports whether k's public key is the one published as kid
// at start-up.
func (s *Service) published(kid string, k *signer.Key) bool {
	for _, p := range s.keys {
		if p.ID != kid {
			continue
		}
		pub, ok := p.Public().(interface{ Equal(crypto.PublicKey) bool })
		return ok && pub.Equal(k.Public())
	}
	return false
}

// readiness: ready when the NATS connection is up and every receiver's
// consumer exists on the server (it could have been deleted by an operator).
func (s *Service) readiness() []ops.NamedCheck {
	return []ops.NamedCheck{
		{Name: "nats", Check: func(context.Context) error {
			if st := s.nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("connection is %s", strings.ToLower(st.String()))
			}
			return nil
		}},
		{Name: "consumers", Check: func(ctx context.Context) error {
			var missing []string
			for _, name := range s.cfg.ReceiverNames() {
				if _, err := s.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(name)); err != nil {
					missing = append(missing, fmt.Sprintf("%s (%v)", queue.ConsumerName(name), err))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("not bound: %s", strings.Join(missing, ", "))
			}
			return nil
		}},
	}
}

// Run runs the worker pool until ctx is cancelled, then shuts the service
// down in order. See the package function Run.
func (s *Service) Run(ctx context.Context) error {
	s.log.Info("setrelay running",
		zap.String("nats", secret.URLList(s.url)), zap.Bool("embedded_nats", s.srv != nil),
		zap.Stringer("ops", s.ops.Addr()), zap.Strings("receivers", s.cfg.ReceiverNames()),
		zap.Int("concurrency", s.cfg.Worker.Concurrency))
	// Say at once that a shutdown began and why ("interrupt signal
	// received"): the pool may take the whole grace period to return, and
	// an operator watching a silent process presses Ctrl-C again.
	stopNotice := context.AfterFunc(ctx, func() {
		s.log.Info("shutdown requested: no new intents are pulled; in-flight pushes get the grace period, the rest is handed back",
			zap.String("cause", context.Cause(ctx).Error()), zap.Duration("grace_period", s.cfg.Worker.GracePeriod))
	})
	stopFleet := s.runFleet(ctx)
	err := s.runWorkers(ctx)
	stopFleet()
	stopNotice()
	s.log.Info("shutting down")
	if serr := s.shutdown(); serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return err
	}
	s.log.Info("stopped")
	return nil
}

// shutdown runs the shutdown steps in reverse start order: ops server,
// push clients, NATS drain, embedded server. Each step gets its own bound,
// independent of the (already cancelled) run context.
func (s *Service) shutdown() error {
	var errs []error
	for i := len(s.steps) - 1; i >= 0; i-- {
		ctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
		if err := s.steps[i](ctx); err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	s.steps = nil
	return errors.Join(errs...)
}

// drain flushes pending acks and unsubscribes, then waits until the
// connection is closed, so that nothing the workers settled is lost when
// the process exits.
func drain(ctx context.Context, nc *nats.Conn) error {
	if nc.IsClosed() {
		return nil
	}
	closed := make(chan struct{})
	prev := nc.ClosedHandler()
	nc.SetClosedHandler(func(c *nats.Conn) {
		if prev != nil {
			prev(c)
		}
		close(closed)
	})
	if err := nc.Drain(); err != nil {
		nc.Close()
		return fmt.Errorf("drain NATS connection: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		nc.Close()
		return fmt.Errorf("drain NATS connection: %w", ctx.Err())
	}
}

// ClientURL is where producers and the CLI reach NATS: the embedded
// server's client URL, or the configured URL.
func (s *Service) ClientURL() string { return s.url }

// OpsAddr is the ops server's bound address.
func (s *Service) OpsAddr() net.Addr { return s.ops.Addr() }

// JetStream is the service's JetStream context, for in-process producers
// (the demo) and tests.
func (s *Service) JetStream() jetstream.JetStream { return s.js }

// NATSOutMsgs is how many messages the relay's connections to NATS have
// sent: its own and, with the embedded server, the loopback one its fetch
// loops pull a backlog through. setrelay bench reports it per SET.
func (s *Service) NATSOutMsgs() uint64 {
	n := s.nc.Stats().OutMsgs
	if s.bulk != nil {
		n += s.bulk.Conn().Stats().OutMsgs
	}
	return n
}

// PruneCommand is the command that lists and deletes the consumers of
// receivers no longer in cfg, as an operator would type it.
func PruneCommand(cfg *config.Config) string {
	file := cfg.Source
	if file == "" {
		file = "FILE"
	} else if strings.ContainsAny(file, " \t\n'\"\\$`;&|<>()*?[]#~") {
		file = "'" + strings.ReplaceAll(file, "'", `'\''`) + "'"
	}
	return "setrelay provision --prune --config " + file
}

// warnOrphans logs the consumers of receivers that are no longer
// configured, each with the intents it still holds, and the command that
// removes them. With Interest retention they hold those intents, and every
// intent published from now on, until deleted.
func warnOrphans(log *zap.Logger, cfg *config.Config, orphans []queue.Orphan) {
	if len(orphans) == 0 {
		return
	}
	names := make([]string, len(orphans))
	var pending uint64
	for i, o := range orphans {
		names[i] = fmt.Sprintf("%s (receiver %q, %d pending)", o.Consumer, o.Receiver, o.Pending)
		pending += o.Pending
	}
	log.Warn("consumers no relay pulls (of receivers no longer configured, or partitions beyond an ordered receiver's count) keep their backlog, and every new intent, in the intents stream until deleted; once they are gone for good, run: "+PruneCommand(cfg),
		zap.Strings("consumers", names), zap.Uint64("pending", pending), zap.String("fix", PruneCommand(cfg)))
}

// Connect connects to NATS as the configuration says, for the commands
// that talk to a running setrelay's queue (provision, publish, dlq ...):
// nats.url, overridden by NATS_URL and the other NATS_* variables, or, when
// it is empty, the embedded server of a running 'setrelay run' on
// nats.listen. The caller drains or closes the connection.
func Connect(ctx context.Context, cfg *config.Config, log *zap.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if log == nil {
		log = zap.NewNop()
	}
	qcfg := queueConfig(cfg)
	nc, err := queue.Connect(ctx, qcfg, log)
	if err != nil {
		if qcfg.URL == "" {
			return nil, nil, fmt.Errorf("%w (nats.url is empty, so the embedded server of a running 'setrelay run' was expected on %s; start it, or set nats.url or NATS_URL)", err, qcfg.Listen)
		}
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// Provision connects as Connect does and creates or updates the streams
// and one consumer per receiver. It is what `setrelay provision` runs, for
// deployments that provision in a separate step before the workers start
// ('setrelay run' provisions by itself).
func Provision(ctx context.Context, cfg *config.Config, log *zap.Logger) error {
	if log == nil {
		log = zap.NewNop()
	}
	nc, js, err := Connect(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	qcfg := queueConfig(cfg)
	pctx, cancel := context.WithTimeout(ctx, provisionTimeout)
	defer cancel()
	if err := queue.Provision(pctx, js, qcfg, cfg.ReceiverNames()); err != nil {
		return err
	}
	orphans, err := Orphans(ctx, js, cfg)
	if err != nil {
		return err
	}
	warnOrphans(log, cfg, orphans)
	log.Info("provisioned", zap.String("stream", queue.IntentStream), zap.String("dlq", queue.DLQStream), zap.Strings("receivers", cfg.ReceiverNames()), zap.Int("replicas", qcfg.Replicas))
	if err := nc.Drain(); err != nil {
		return fmt.Errorf("drain NATS connection: %w", err)
	}
	return nil
}
