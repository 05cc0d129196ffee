package relay

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/fleet"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// fleetLimits are the receivers' fleet-wide limits; empty when no receiver
// has one, and then the process does not join the fleet at all.
func fleetLimits(cfg *config.Config) map[string]fleet.Limits {
	out := map[string]fleet.Limits{}
	for _, r := range cfg.Receivers {
		if r.RateLimit > 0 || r.MaxInFlight > 0 {
			out[r.Name] = fleet.Limits{Rate: r.RateLimit, InFlight: r.MaxInFlight}
		}
	}
	return out
}

// joinFleet announces this process in the fleet bucket when some receiver
// has a limit, so that the limit is divided among every process sharing the
// NATS cluster.
func (s *Service) joinFleet(ctx context.Context, qcfg queue.Config, reg prometheus.Registerer) error {
	limits := fleetLimits(s.cfg)
	if len(limits) == 0 {
		return nil
	}
	m, err := fleet.Join(ctx, s.js, fleet.Options{
		Limits: limits, Replicas: qcfg.Replicas, Log: s.log.Named("fleet"), Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("join the fleet (receiver limits are shared through the %s bucket): %w", fleet.Bucket, err)
	}
	s.fleet = m
	return nil
}

// limitReceiver plugs the fleet's share of the receiver's limits into its
// worker spec.
func (s *Service) limitReceiver(spec *worker.Receiver) {
	if s.fleet == nil {
		return
	}
	if l := s.fleet.RateLimiter(spec.Name); l != nil {
		spec.Limiter = l
	}
	if g := s.fleet.Gate(spec.Name); g != nil {
		spec.Gate = g
	}
}

// runFleet keeps the membership alive while the pool runs; the returned
// function stops it and, once no push is left, leaves the fleet so the
// others take this process's share at once.
func (s *Service) runFleet(ctx context.Context) (stop func()) {
	if s.fleet == nil {
		return func() {}
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.fleet.Run(fctx)
	}()
	return func() {
		cancel()
		<-done
		lctx, lcancel := context.WithTimeout(context.Background(), s.fleet.Heartbeat()*2)
		defer lcancel()
		if err := s.fleet.Leave(lctx); err != nil {
			s.log.Warn("could not leave the fleet; the others take this process's share when its entry expires", zap.Error(err))
		}
	}
}
