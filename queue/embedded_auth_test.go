package queue_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

// TestStartEmbeddedRefusesExposedListener checks the rule that keeps the
// embedded server from being reachable by anyone: beyond loopback, clients
// must authenticate and use TLS, and the error names what to set. Each case
// is refused before anything listens.
func TestStartEmbeddedRefusesExposedListener(t *testing.T) {
	dir := t.TempDir()
	conf := confWriter(t, dir)
	tlsBlock := serverTLSBlock(t, dir)
	users := "authorization { users: [{user: relay, password: s3cret-pass}] }\n"
	for _, tc := range []struct {
		name, listen, file string
		want, notWant      []string
	}{
		{"all interfaces, no server_config", "0.0.0.0:-1", "",
			[]string{"0.0.0.0:-1", "not a loopback", "nats.server_config", "nats.user", "TLS", "nats.listen on loopback"}, nil},
		{"empty host binds everything", ":-1", "",
			[]string{"authentication", "TLS"}, nil},
		{"auth but no TLS", "0.0.0.0:-1", conf("auth.conf", users),
			[]string{"TLS: add a tls"}, []string{"authentication"}},
		{"TLS but no auth", "0.0.0.0:-1", conf("tls.conf", tlsBlock),
			[]string{"authentication: set nats.server_config"}, []string{"TLS:"}},
		{"no_auth_user defeats auth", "0.0.0.0:-1", conf("noauth.conf", users+tlsBlock+"no_auth_user: relay\n"),
			[]string{`no_auth_user "relay"`}, []string{"TLS:"}},
		{"allow_non_tls defeats TLS", "0.0.0.0:-1", conf("nontls.conf", users+tlsBlock+"allow_non_tls: true\n"),
			[]string{"allow_non_tls"}, []string{"authentication"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: tc.listen, ServerConfig: tc.file}, zap.NewNop())
			var exposed *queue.ExposedError
			if !errors.As(err, &exposed) {
				t.Fatalf("StartEmbedded(%s) = %v, want *ExposedError", tc.listen, err)
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(msg, w) {
					t.Errorf("error mentions %q, which is configured:\n%s", w, msg)
				}
			}
			if strings.Contains(msg, "s3cret-pass") {
				t.Errorf("error leaks the password: %s", msg)
			}
		})
	}

	// Authentication and TLS together are enough; loopback needs neither.
	for _, c := range []queue.Config{
		{Listen: "0.0.0.0:-1", ServerConfig: conf("ok.conf", users+tlsBlock)},
		{Listen: "127.0.0.1:-1"},
		{Listen: "[::1]:-1"},
		{Listen: "localhost:-1"},
	} {
		c.StoreDir = t.TempDir()
		srv, err := queue.StartEmbedded(c, zap.NewNop())
		if err != nil {
			if strings.Contains(c.Listen, "::1") && strings.Contains(err.Error(), "not ready") {
				continue // no IPv6 loopback on this machine
			}
			t.Errorf("StartEmbedded(%s, %q): %v", c.Listen, c.ServerConfig, err)
			continue
		}
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// TestStartEmbeddedRefusesOtherListeners: the exposure rule covers the
// client port, so server_config may not open any other listener beyond
// loopback, whatever nats.listen is.
func TestStartEmbeddedRefusesOtherListeners(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"websocket":  "websocket { port: 18443, no_tls: true }\n",
		"leafnodes":  "leafnodes { port: 17422 }\n",
		"cluster":    "cluster { name: x, port: 16222 }\n",
		"monitoring": "http_port: 18222\n",
	} {
		p := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, listen := range []string{"127.0.0.1:-1", "0.0.0.0:-1"} {
			if name == "monitoring" && listen == "127.0.0.1:-1" {
				continue // monitoring follows the client host: loopback here
			}
			srv, err := queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: listen, ServerConfig: p}, zap.NewNop())
			if err == nil {
				srv.Shutdown()
				srv.WaitForShutdown()
			}
			if !errors.Is(err, queue.ErrServerConfig) || !strings.Contains(err.Error(), name[:4]) {
				t.Errorf("%s with listen %s: %v, want ErrServerConfig naming it", name, listen, err)
			}
		}
	}
	// Monitoring on loopback is allowed.
	p := filepath.Join(dir, "loopback-monitoring.conf")
	if err := os.WriteFile(p, []byte("http: \"127.0.0.1:-1\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerConfig: p}, zap.NewNop())
	if err != nil {
		t.Fatalf("loopback monitoring refused: %v", err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// TestStartEmbeddedServerConfigErrors checks that a server_config that does
// not parse is reported as such, naming the file, without its contents.
func TestStartEmbeddedServerConfigErrors(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(p, []byte("authorization { token: $NOT_SET_ANYWHERE_X }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerConfig: p}, zap.NewNop())
	if !errors.Is(err, queue.ErrServerConfig) || !strings.Contains(err.Error(), p) {
		t.Fatalf("StartEmbedded with a broken server_config: %v", err)
	}
	_, err = queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:-1", ServerConfig: p + ".missing"}, zap.NewNop())
	if !errors.Is(err, queue.ErrServerConfig) {
		t.Fatalf("StartEmbedded with a missing server_config: %v", err)
	}
}

// TestConnectLoopback: a second connection to the embedded server over its
// plain listener, with the credentials the server asks for; none when the
// listener wants TLS or credentials the configuration lacks.
func TestConnectLoopback(t *testing.T) {
	dir := t.TempDir()
	conf := confWriter(t, dir)
	tlsBlock := serverTLSBlock(t, dir)
	users := conf("users.conf", "authorization { users: [{user: relay, password: s3cret-pass}] }\n")
	for _, tc := range []struct {
		name   string
		server queue.Config
		relay  queue.Config
		want   bool
	}{
		{"plain listener", queue.Config{Listen: "127.0.0.1:-1"}, queue.Config{}, true},
		{"users, relay has them", queue.Config{Listen: "127.0.0.1:-1", ServerConfig: users}, queue.Config{User: "relay", Password: "s3cret-pass"}, true},
		{"users, relay has none", queue.Config{Listen: "127.0.0.1:-1", ServerConfig: users}, queue.Config{}, false},
		{"TLS listener", queue.Config{Listen: "127.0.0.1:-1", ServerConfig: conf("tls.conf", tlsBlock)}, queue.Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.server.StoreDir = t.TempDir()
			srv, err := queue.StartEmbedded(tc.server, zap.NewNop())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
			nc, ok := queue.ConnectLoopback(srv, tc.relay, zap.NewNop())
			if ok != tc.want || (nc != nil) != ok {
				t.Fatalf("ConnectLoopback = %v, %v; want ok %v", nc, ok, tc.want)
			}
			if !ok {
				return
			}
			defer nc.Close()
			if addr := nc.ConnectedAddr(); !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Errorf("connected to %q, want the loopback listener", addr)
			}
			if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
				t.Errorf("JetStream request over the connection: %v", err)
			}
		})
	}
}

// confWriter returns a function that writes a server configuration file
// into dir and returns its path.
func confWriter(t *testing.T, dir string) func(name, body string) string {
	t.Helper()
	return func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
}

// serverTLSBlock is a server configuration's tls block with a fresh
// certificate for 127.0.0.1 in dir.
func serverTLSBlock(t *testing.T, dir string) string {
	t.Helper()
	certPath, keyPath := serverCert(t, dir)
	return "tls { cert_file: \"" + certPath + "\", key_file: \"" + keyPath + "\" }\n"
}
