package queue

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
)

// embeddedReadyTimeout bounds how long StartEmbedded waits for the server,
// including JetStream recovering its file store after a restart.
const embeddedReadyTimeout = 30 * time.Second

// ErrListenInUse is returned by StartEmbedded when its client port is taken,
// usually by another setrelay on the same machine.
var ErrListenInUse = errors.New("queue: embedded NATS listen address already in use (is another setrelay running? set nats.listen or NATS_URL)")

// StartEmbedded starts an in-process nats-server with JetStream storing under
// cfg.StoreDir and a client port on cfg.Listen. It returns once the server
// accepts connections; the caller owns it and must Shutdown and
// WaitForShutdown it. Server logs go to log: notices at debug, warnings and
// errors at their level, so that a single binary has one log stream.
func StartEmbedded(cfg Config, log *zap.Logger) (*server.Server, error) {
	cfg = cfg.withDefaults()
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("queue: nats listen %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("queue: nats listen %q: port: %w", cfg.Listen, err)
	}
	if port > 0 {
		// nats-server only logs a failed listen (through Fatalf) and keeps
		// running without clients, so probe first to give a clear error.
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("%w: %s", ErrListenInUse, cfg.Listen)
			}
			return nil, fmt.Errorf("queue: nats listen %q: %w", cfg.Listen, err)
		}
		_ = ln.Close()
	}

	opts, err := embeddedOptions(cfg, host, port)
	if err != nil {
		return nil, err
	}
	if err := checkListeners(cfg, host, opts); err != nil {
		return nil, err
	}
	if err := checkExposure(cfg.Listen, host, opts); err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("queue: embedded nats-server: %w", err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	srv.SetLoggerV2(&serverLogger{log: log.Named("nats-server").Sugar()}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("queue: embedded nats-server on %s (store %s) not ready after %s", cfg.Listen, cfg.StoreDir, embeddedReadyTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("queue: embedded nats-server: JetStream failed to start with store %s", cfg.StoreDir)
	}
	log.Info("embedded NATS started", zap.String("client_url", srv.ClientURL()), zap.String("store_dir", cfg.StoreDir))
	return srv, nil
}

// serverLogger adapts nats-server's logger to zap. Fatalf must not exit the
// process as the server's default logger does: setrelay decides that.
type serverLogger struct{ log *zap.SugaredLogger }

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debugf(format, v...) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warnf(format, v...) }
func (l *serverLogger) Fatalf(format string, v ...any)  { l.log.Errorf(format, v...) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Errorf(format, v...) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debugf(format, v...) }
func (l *serverLogger) Tracef(format string, v ...any)  {}
