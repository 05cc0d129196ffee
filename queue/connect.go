package queue

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/secret"
)

// connectionName identifies setrelay connections in `nats server report connections`.
const connectionName = "setrelay"

// Connect connects to cfg.URL (or, when it is empty, to the embedded server's
// client address nats://cfg.Listen) with the configured authentication and
// TLS. It reconnects forever: a worker must ride out a NATS restart, and its
// unacknowledged messages are redelivered by the server anyway.
func Connect(ctx context.Context, cfg Config, log *zap.Logger) (*nats.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("queue: connect: %w", err)
	}
	cfg = cfg.withDefaults()
	url := cfg.URL
	if url == "" {
		url = "nats://" + cfg.Listen
	}
	opts, err := connectOptions(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		// The URL may carry user:password; report only the failure.
		return nil, fmt.Errorf("queue: connect to NATS (%s): %w", secret.URLList(url), err)
	}
	return nc, nil
}

// ConnectInProcess connects to an embedded server without a socket, which is
// what the worker uses in the single-binary default.
func ConnectInProcess(srv *server.Server, log *zap.Logger) (*nats.Conn, error) {
	opts := append(handlerOptions(log), nats.InProcessServer(srv), nats.Name(connectionName), nats.MaxReconnects(-1))
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("queue: connect in-process: %w", err)
	}
	return nc, nil
}

func connectOptions(ctx context.Context, cfg Config, log *zap.Logger) ([]nats.Option, error) {
	opts := append(handlerOptions(log), nats.Name(connectionName), nats.MaxReconnects(-1))
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl); d > 0 {
			opts = append(opts, nats.Timeout(d))
		}
	}

	auth := 0
	if cfg.Creds != "" {
		auth++
		if err := readable(cfg.Creds, "nats creds"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.NKey != "" {
		auth++
		if err := readable(cfg.NKey, "nats nkey seed"); err != nil {
			return nil, err
		}
		o, err := nats.NkeyOptionFromSeed(cfg.NKey)
		if err != nil {
			return nil, fmt.Errorf("queue: nats nkey seed %s: %w", cfg.NKey, err)
		}
		opts = append(opts, o)
	}
	if cfg.User != "" || cfg.Password.IsSet() {
		auth++
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
	}
	if cfg.Token.IsSet() {
		auth++
		opts = append(opts, nats.Token(cfg.Token.Reveal()))
	}
	if auth > 1 {
		return nil, errors.New("queue: choose one NATS authentication: creds, nkey, user/password or token")
	}

	if cfg.CA != "" {
		if err := readable(cfg.CA, "nats CA"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.RootCAs(cfg.CA))
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, errors.New("queue: nats TLS client certificate needs both cert and key")
	}
	if cfg.Cert != "" {
		if err := readable(cfg.Cert, "nats cert"); err != nil {
			return nil, err
		}
		if err := readable(cfg.Key, "nats key"); err != nil {
			return nil, err
		}
		opts = append(opts, nats.ClientCert(cfg.Cert, cfg.Key))
	}
	return opts, nil
}

// readable gives an early, named error for a missing file instead of the
// client library's less specific one at connect time.
func readable(path, what string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("queue: %s file: %w", what, err)
	}
	return f.Close()
}

// handlerOptions log the connection's life: reconnects are expected events,
// so disconnects are warnings and a closed connection is an error only when
// it carries one.
func handlerOptions(log *zap.Logger) []nats.Option {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("nats")
	return []nats.Option{
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", zap.Error(err))
				return
			}
			log.Info("NATS disconnected")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", zap.String("server", secret.URL(nc.ConnectedUrl())))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			if err := nc.LastError(); err != nil {
				log.Error("NATS connection closed", zap.Error(err))
				return
			}
			log.Info("NATS connection closed")
		}),
		nats.ErrorHandler(func(nc *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("NATS async error", zap.String("subject", subj), zap.Error(err))
		}),
	}
}
