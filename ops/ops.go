// Package ops serves setrelay's operations endpoints: Prometheus metrics,
// liveness, readiness and the public signing keys (JWKS), on one small HTTP
// server kept apart from any traffic path.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/setrelay/setrelay/internal/promreg"
	"go.uber.org/zap"
)

// Check is one readiness condition: nil when satisfied. It must return
// promptly; the server bounds it with CheckTimeout anyway.
type Check func(ctx context.Context) error

// NamedCheck is a readiness check with the name shown in /readyz.
type NamedCheck struct {
	Name  string
	Check Check
}

// CheckTimeout bounds each readiness check, so that a wedged dependency makes
// /readyz answer "not ready" rather than hang the orchestrator's probe.
const CheckTimeout = 2 * time.Second

// JWKSMaxAge is how long receivers may cache /jwks.json. Short enough that a
// newly added key is seen well within a rotation's overlap period.
const JWKSMaxAge = 5 * time.Minute

// Config is what the ops server needs.
type Config struct {
	// Listen is the host:port to serve on.
	Listen string
	// Registry is the process's metric registry: served at /metrics, and
	// the Go runtime and process collectors are added to it.
	Registry *prometheus.Registry
	// Ready lists the readiness checks; /readyz is ready when all pass.
	Ready []NamedCheck
	// JWKS holds the public signing keys served at /jwks.json. New refuses
	// a set containing a private key.
	JWKS jose.JSONWebKeySet
	// Log receives serve errors; nil discards them.
	Log *zap.Logger
}

// Server is the ops HTTP server. Start binds and serves in the background;
// Shutdown stops it.
type Server struct {
	cfg     Config
	log     *zap.Logger
	handler http.Handler
	srv     *http.Server

	mu       sync.Mutex
	ln       net.Listener
	serveErr chan error
}

// New builds the server and its handler. It registers the Go runtime,
// process and build-info collectors on cfg.Registry unless they already are.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("ops: a metrics registry is required")
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		// go_build_info: which build is running, for dashboards and rollouts.
		collectors.NewBuildInfoCollector(),
	} {
		if _, err := promreg.Register(cfg.Registry, c); err != nil {
			return nil, fmt.Errorf("ops: register runtime collectors: %w", err)
		}
	}
	jwks, err := encodeJWKS(cfg.JWKS)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{cfg: cfg, log: log}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Registry, promhttp.HandlerOpts{
		// A failing collector should not blank the whole scrape: report
		// what can be gathered, and the error count.
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          cfg.Registry,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		// RFC 7517 section 8.5 registers this media type for JWK sets.
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(JWKSMaxAge.Seconds())))
		_, _ = w.Write(jwks)
	})
	s.handler = mux
	s.srv = &http.Server{
		Addr:              cfg.Listen,
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Long enough for a large scrape on a busy machine.
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  60 * time.Second,
		ErrorLog:     zap.NewStdLog(log.Named("ops_http")),
	}
	return s, nil
}

// encodeJWKS marshals the key set once; it never changes while running.
func encodeJWKS(set jose.JSONWebKeySet) ([]byte, error) {
	for _, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("ops: key %q in the JWKS is private; publish only public keys", k.KeyID)
		}
	}
	if set.Keys == nil {
		set.Keys = []jose.JSONWebKey{}
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("ops: encode JWKS: %w", err)
	}
	return b, nil
}

// Handler returns the HTTP handler, for tests and for mounting elsewhere.
func (s *Server) Handler() http.Handler { return s.handler }

// readyz runs every check and answers 200 when all pass, 503 otherwise,
// listing each check's state in the style of Kubernetes' own probes.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
	defer cancel()
	body := make([]byte, 0, 128)
	ready := true
	for _, c := range s.cfg.Ready {
		if err := c.Check(ctx); err != nil {
			ready = false
			body = fmt.Appendf(body, "[-]%s failed: %v\n", c.Name, err)
		} else {
			body = fmt.Appendf(body, "[+]%s ok\n", c.Name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		body = append(body, "not ready\n"...)
	} else {
		body = append(body, "ready\n"...)
	}
	_, _ = w.Write(body)
}

// Start binds the listen address, so that a port clash is reported here
// rather than lost in a goroutine, and serves in the background until
// Shutdown.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("ops: listen on %s: %w", s.cfg.Listen, err)
	}
	served := make(chan error, 1)
	s.mu.Lock()
	s.ln = ln
	s.serveErr = served
	s.mu.Unlock()
	go func() {
		// Serve returns when Shutdown closes the listener.
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		served <- err
	}()
	return nil
}

// Addr is the bound address after Start (useful with port 0), or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting connections, waits for in-flight requests until
// ctx ends, and returns the error that stopped serving, if any.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	s.mu.Lock()
	ch := s.serveErr
	s.serveErr = nil // a second Shutdown must not wait for a second result
	s.mu.Unlock()
	if ch != nil {
		if serr := <-ch; serr != nil && err == nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("ops: shutdown: %w", err)
	}
	return nil
}
