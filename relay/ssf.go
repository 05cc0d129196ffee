package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/ssf"
	"github.com/setrelay/setrelay/worker"
)

// ssfService is the SSF transmitter API's share of the relay: the API on
// its own public listener and the dispatcher of push streams.
type ssfService struct {
	api        *ssf.Server
	http       *http.Server
	ln         net.Listener
	dispatcher *ssf.Dispatcher
}

// startSSF opens the streams buckets, starts the SSF listener (HTTPS with
// ssf.tls, else plain HTTP for a TLS-terminating proxy) and builds the
// dispatcher, which Run runs beside the pool.
func (s *Service) startSSF(ctx context.Context, signers map[string]*signer.Signer, pm *push.Metrics, reg prometheus.Registerer) error {
	cfg := s.cfg
	tcfg := cfg.Transmitter()
	tcfg.Queue = queueConfig(cfg)
	jwks := signer.JWKS(s.keys...)
	log := s.log.Named("ssf")
	api, err := ssf.New(ctx, tcfg, ssf.Deps{
		NC: s.nc, JS: s.js, Signer: signers[tcfg.KeyID], SendKID: true,
		Log: log, Registerer: reg, JWKS: &jwks,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.SSF.Listen)
	if err != nil {
		return fmt.Errorf("ssf.listen %s: %w", cfg.SSF.Listen, err)
	}
	hs := &http.Server{
		Handler:           api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A long poll holds the response for up to max_poll_wait.
		WriteTimeout: api.Config().MaxPollWait + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     zap.NewStdLog(log),
	}
	go func() {
		var err error
		if cfg.SSF.TLS.Cert != "" {
			err = hs.ServeTLS(ln, cfg.SSF.TLS.Cert, cfg.SSF.TLS.Key)
		} else {
			err = hs.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("SSF listener stopped", zap.Error(err))
		}
	}()
	s.steps = append(s.steps, func(ctx context.Context) error { return hs.Shutdown(ctx) })
	log.Info("SSF transmitter API listening", zap.Stringer("listen", ln.Addr()), zap.Bool("tls", cfg.SSF.TLS.Cert != ""),
		zap.String("configuration", api.Config().BaseURL+ssf.WellKnownPath))
	if cfg.SSF.TLS.Cert == "" {
		log.Warn("the SSF API is served over plain HTTP: put a TLS-terminating proxy in front (set ssf.tls to serve HTTPS here)", zap.Stringer("listen", ln.Addr()))
	}
	s.ssf = &ssfService{
		api: api, http: hs, ln: ln,
		dispatcher: ssf.NewDispatcher(api, worker.Deps{JS: s.js, Log: log.Named("push"), Registerer: reg, Tracer: s.trace.TracerProvider()}, pm),
	}
	return nil
}

// runWorkers runs the pool of configured receivers and the SSF dispatcher
// until ctx ends, and returns once both have stopped.
func (s *Service) runWorkers(ctx context.Context) error {
	var wg sync.WaitGroup
	var derr error
	if s.ssf != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			derr = s.ssf.dispatcher.Run(ctx)
		}()
	}
	var err error
	if s.pool != nil {
		err = s.pool.Run(ctx)
	} else {
		<-ctx.Done()
	}
	wg.Wait()
	return errors.Join(err, derr)
}

// SSFAddr is the SSF listener's address, nil unless ssf.enabled.
func (s *Service) SSFAddr() net.Addr {
	if s.ssf == nil {
		return nil
	}
	return s.ssf.ln.Addr()
}

// Orphans is queue.Orphans without the consumers of receiver-managed SSF
// streams (rcv_ssf-<stream id>): those belong to the streams registry, not
// to the configuration, so they are never orphans of it and
// 'provision --prune' must never offer to delete them. It adds the
// partition consumers of configured receivers beyond their partition count
// that still hold intents (queue.StalePartitions): no relay pulls them.
func Orphans(ctx context.Context, js jetstream.JetStream, cfg *config.Config) ([]queue.Orphan, error) {
	all, err := queue.Orphans(ctx, js, cfg.ReceiverNames())
	if err != nil {
		return nil, err
	}
	stale, err := queue.StalePartitions(ctx, js, cfg.ReceiverNames(), queueConfig(cfg).Ordered)
	if err != nil {
		return nil, err
	}
	all = append(all, stale...)
	prefix := queue.ConsumerName(ssf.ReceiverName(""))
	out := all[:0]
	for _, o := range all {
		if !strings.HasPrefix(o.Consumer, prefix) {
			out = append(out, o)
		}
	}
	return out, nil
}
