package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// ExposedError is returned by StartEmbedded when the embedded server would
// listen beyond loopback without authentication or without TLS. Anyone who
// can reach such a listener could have SETs signed with the organisation's
// key and read or purge dead letters, so setrelay refuses to start.
type ExposedError struct {
	// Listen is the configured client address.
	Listen string
	// Missing says what the server configuration lacks, each entry naming
	// the setting that fixes it.
	Missing []string
}

func (e *ExposedError) Error() string {
	return fmt.Sprintf("queue: the embedded NATS server would listen on %s, which is not a loopback address, without %s",
		e.Listen, strings.Join(e.Missing, " and "))
}

// embeddedOptions builds the embedded server's options: those of
// cfg.ServerConfig (a nats-server configuration file: accounts, users,
// permissions, TLS) when set, with setrelay's own listen address, store
// directory and JetStream on top, since those are configured in setrelay's
// file and must not be set in two places.
func embeddedOptions(cfg Config, host string, port int) (*server.Options, error) {
	opts := &server.Options{}
	if cfg.ServerConfig != "" {
		o, err := server.ProcessConfigFile(cfg.ServerConfig)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrServerConfig, cfg.ServerConfig, err)
		}
		opts = o
	}
	if opts.ServerName == "" {
		opts.ServerName = "setrelay-embedded"
	}
	opts.Host, opts.Port = host, port
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	// The process owns signal handling (signal.NotifyContext in main).
	opts.NoSigs = true
	return opts, nil
}

// checkListeners refuses a server_config that opens listeners besides the
// client port: the exposure rule below covers only that one, and the
// embedded server is a single node with no use for routes, gateways, leaf
// nodes, WebSocket or MQTT. HTTP monitoring (which lists connections,
// subscriptions and accounts) may stay on loopback.
func checkListeners(cfg Config, host string, o *server.Options) error {
	var open []string
	for _, l := range []struct {
		name string
		port int
	}{
		{"cluster", o.Cluster.Port}, {"gateway", o.Gateway.Port}, {"leafnodes", o.LeafNode.Port},
		{"websocket", o.Websocket.Port}, {"mqtt", o.MQTT.Port},
	} {
		if l.port != 0 {
			open = append(open, l.name)
		}
	}
	if len(open) > 0 {
		return fmt.Errorf("%w %s: opens %s listeners; the embedded server is a single node listening only on nats.listen: remove them, or run a NATS cluster and set nats.url",
			ErrServerConfig, cfg.ServerConfig, strings.Join(open, ", "))
	}
	httpHost := o.HTTPHost
	if httpHost == "" {
		// nats-server puts monitoring on the client host unless told otherwise.
		httpHost = host
	}
	if (o.HTTPPort != 0 || o.HTTPSPort != 0) && !isLoopback(httpHost) {
		return fmt.Errorf("%w %s: HTTP monitoring on %q would show connections, subscriptions and accounts to anyone who reaches it; set http: 127.0.0.1:PORT or remove it",
			ErrServerConfig, cfg.ServerConfig, httpHost)
	}
	return nil
}

// checkExposure refuses a non-loopback listener unless clients must
// authenticate and use TLS. Loopback stays open without either: it is the
// single-binary default, reachable only from this machine.
func checkExposure(listen, host string, opts *server.Options) error {
	if isLoopback(host) {
		return nil
	}
	var missing []string
	switch {
	case !hasClientAuth(opts):
		missing = append(missing, "authentication: set nats.server_config to a nats-server configuration with users, nkeys or a token "+
			"(configs/nats/embedded.conf with configs/nats/accounts.conf), and the relay's own nats.user and nats.password (or nats.token, nats.nkey, nats.creds)")
	case opts.NoAuthUser != "":
		missing = append(missing, fmt.Sprintf("authentication: nats.server_config sets no_auth_user %q, which lets anyone connect unauthenticated; remove it", opts.NoAuthUser))
	}
	switch {
	case opts.TLSConfig == nil:
		missing = append(missing, "TLS: add a tls { cert_file, key_file } block to the file nats.server_config names (see configs/nats/embedded.conf)")
	case opts.AllowNonTLS:
		missing = append(missing, "TLS: nats.server_config sets allow_non_tls, which accepts plain-text clients; remove it")
	}
	if len(missing) == 0 {
		return nil
	}
	missing[len(missing)-1] += fmt.Sprintf("; or keep nats.listen on loopback (%s)", DefaultListen)
	return &ExposedError{Listen: listen, Missing: missing}
}

// hasClientAuth reports whether the options make clients authenticate, in
// any of the ways nats-server supports.
func hasClientAuth(o *server.Options) bool {
	return o.Username != "" || o.Authorization != "" || len(o.Users) > 0 || len(o.Nkeys) > 0 ||
		len(o.TrustedOperators) > 0 || len(o.TrustedKeys) > 0 || o.AuthCallout != nil || o.CustomClientAuthentication != nil
}

// isLoopback reports whether host, as written in a listen address, binds
// only the loopback interface. An empty host binds every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrServerConfig is returned (wrapped) by StartEmbedded when the
// nats-server configuration file (ServerConfig) cannot be read or parsed.
var ErrServerConfig = errors.New("queue: embedded NATS server configuration")

// ErrEmbeddedAuth is returned (wrapped) by ConnectInProcessAs when the
// embedded server refuses the relay's own credentials.
var ErrEmbeddedAuth = errors.New("queue: the embedded NATS server (nats.server_config) requires authentication that the relay's nats.user/nats.password, nats.token, nats.nkey or nats.creds do not give")

// ConnectLoopback connects to the embedded server's client listener on the
// loopback interface, with cfg's credentials, when that listener is plain
// TCP; ok is false (and nc nil) when it wants TLS, or credentials cfg
// lacks, or refuses the connection.
//
// The relay keeps its in-process connection (ConnectInProcessAs) and uses
// this one only to pull while a backlog drains (worker.Receiver.Bulk). An
// in-process connection is a net.Pipe, whose writes each wait for the
// other side's goroutine to read them; a socket buffers them in the kernel.
// Measured with setrelay bench on 2 cores, draining a backlog over the
// socket took 4-11 % less CPU per SET, but at 1,000 intents a second it
// took 12-17 % more (a few syscalls and wake-ups per message where the
// pipe switches goroutines), hence both.
func ConnectLoopback(srv *server.Server, cfg Config, log *zap.Logger) (nc *nats.Conn, ok bool) {
	v, err := srv.Varz(nil)
	if err != nil || v.TLSRequired || v.AuthRequired && !cfg.hasCreds() {
		return nil, false
	}
	addr, isTCP := srv.Addr().(*net.TCPAddr)
	if !isTCP || addr.Port <= 0 {
		return nil, false
	}
	ip := addr.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	cfg.CA, cfg.Cert, cfg.Key = "", "", ""
	opts, err := connectOptions(context.Background(), cfg, log)
	if err != nil {
		return nil, false
	}
	nc, err = nats.Connect("nats://"+net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port)), opts...)
	if err != nil {
		if log != nil {
			log.Debug("no loopback connection to the embedded NATS server; pulling in-process only", zap.Error(err))
		}
		return nil, false
	}
	return nc, true
}

// hasCreds reports whether c has any of the credentials a NATS server can
// ask for.
func (c Config) hasCreds() bool {
	return c.Creds != "" || c.NKey != "" || c.User != "" || c.Token != ""
}

// ConnectInProcessAs connects to an embedded server without a socket, as
// ConnectInProcess does, authenticating with cfg's credentials: with
// nats.server_config the embedded server has users like any other. TLS is
// left out: in-process connections never leave the process, and
// nats-server does not require TLS of them.
func ConnectInProcessAs(srv *server.Server, cfg Config, log *zap.Logger) (*nats.Conn, error) {
	cfg.CA, cfg.Cert, cfg.Key = "", "", ""
	// A refused in-process client sees only a closed pipe, so say up front
	// what is missing when the server wants credentials and none are set.
	authRequired := false
	if v, err := srv.Varz(nil); err == nil {
		authRequired = v.AuthRequired
	}
	if authRequired && !cfg.hasCreds() {
		return nil, ErrEmbeddedAuth
	}
	opts, err := connectOptions(context.Background(), cfg, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts, nats.InProcessServer(srv))
	nc, err := nats.Connect("", opts...)
	if err != nil {
		if authRequired {
			return nil, fmt.Errorf("%w: %w", ErrEmbeddedAuth, err)
		}
		return nil, fmt.Errorf("queue: connect in-process: %w", err)
	}
	return nc, nil
}
