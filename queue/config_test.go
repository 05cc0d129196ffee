package queue_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/setrelay/setrelay/queue"
)

func TestApplyEnvOverridesConfig(t *testing.T) {
	cfg := queue.Config{URL: "nats://file:4222", Creds: "file.creds", CA: "file-ca.pem", Cert: "c.pem", Key: "k.pem", NKey: "file.nk"}
	t.Setenv("NATS_URL", "nats://env:4222")
	t.Setenv("NATS_CREDS", "env.creds")
	t.Setenv("NATS_NKEY", "env.nk")
	t.Setenv("NATS_CA", "env-ca.pem")
	t.Setenv("NATS_CERT", "")
	t.Setenv("NATS_KEY", "")
	cfg.ApplyEnv()
	want := queue.Config{URL: "nats://env:4222", Creds: "env.creds", CA: "env-ca.pem", Cert: "c.pem", Key: "k.pem", NKey: "env.nk"}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("after ApplyEnv:\n got %s\nwant %s", cfg, want)
	}
}

func TestConfigNeverPrintsSecrets(t *testing.T) {
	// A NATS URL may carry user:password (nats://relay:pw@host) too.
	cfg := queue.Config{URL: "nats://relay:url-hunter2@n1:4222,nats://relay:url-hunter2@n2:4222", User: "relay", Password: "hunter2-secret", Token: "tok-secret-42"}
	core, logs := observer.New(zap.DebugLevel)
	zap.New(core).Info("config", zap.Any("nats", cfg), zap.Object("nats2", cfg))
	outputs := map[string]string{
		"%v":  fmt.Sprintf("%v", cfg),
		"%+v": fmt.Sprintf("%+v", cfg),
		"%#v": fmt.Sprintf("%#v", cfg),
		"%s":  fmt.Sprintf("%s", cfg),
		"ptr": fmt.Sprintf("%v", &cfg),
		"zap": fmt.Sprint(logs.All()[0].ContextMap()),
	}
	for verb, out := range outputs {
		if strings.Contains(out, "hunter2") || strings.Contains(out, "tok-secret") {
			t.Errorf("%s leaks a secret: %s", verb, out)
		}
		if !strings.Contains(out, "relay") || !strings.Contains(out, "@n2:4222") {
			t.Errorf("%s hides the non-secret user or servers: %s", verb, out)
		}
	}
}

func TestStartEmbeddedPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = queue.StartEmbedded(queue.Config{StoreDir: t.TempDir(), Listen: ln.Addr().String()}, zap.NewNop())
	if !errors.Is(err, queue.ErrListenInUse) {
		t.Fatalf("StartEmbedded on a taken port: %v, want ErrListenInUse", err)
	}
	if !strings.Contains(err.Error(), "NATS_URL") {
		t.Errorf("error does not say what to do: %v", err)
	}
}

func TestConnectInProcess(t *testing.T) {
	env := startEnv(t, testConfig(t), "govuk")
	nc, err := queue.ConnectInProcess(env.srv, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		t.Fatal("not connected")
	}
	if err := nc.Publish("x", nil); err != nil {
		t.Fatal(err)
	}
}

// authServer starts a plain nats-server requiring the given credentials.
func authServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port, opts.NoSigs, opts.NoLog = "127.0.0.1", -1, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return srv.ClientURL()
}

func TestConnectAuthentication(t *testing.T) {
	userURL := authServer(t, &server.Options{Username: "relay", Password: "s3cret-pw"})
	tokenURL := authServer(t, &server.Options{Authorization: "s3cret-token"})
	tests := []struct {
		name   string
		cfg    queue.Config
		wantOK bool
	}{
		{"user/password", queue.Config{URL: userURL, User: "relay", Password: "s3cret-pw"}, true},
		{"wrong password", queue.Config{URL: userURL, User: "relay", Password: "wrong-pw"}, false},
		{"token", queue.Config{URL: tokenURL, Token: "s3cret-token"}, true},
		{"wrong token", queue.Config{URL: tokenURL, Token: "nope-token"}, false},
		{"two methods", queue.Config{URL: tokenURL, Token: "s3cret-token", User: "relay", Password: "x"}, false},
		{"missing creds file", queue.Config{URL: tokenURL, Creds: "/nonexistent/x.creds"}, false},
		{"cert without key", queue.Config{URL: tokenURL, Cert: "/nonexistent/c.pem"}, false},
		{"unreachable URL with credentials", queue.Config{URL: "nats://relay:s3cret-pw@127.0.0.1:1,nats://x:s3cret-2@127.0.0.1:2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			nc, err := queue.Connect(ctx, tt.cfg, zap.NewNop())
			if tt.wantOK {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				nc.Close()
				return
			}
			if err == nil {
				nc.Close()
				t.Fatal("Connect succeeded")
			}
			for _, secret := range []string{"s3cret", "wrong-pw", "nope-token"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error leaks a secret: %v", err)
				}
			}
		})
	}
}

func TestConnectLogsDisconnectAndReconnect(t *testing.T) {
	cfg := testConfig(t)
	srv, err := queue.StartEmbedded(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	core, logs := observer.New(zap.InfoLevel)
	cfg.URL = url
	nc, err := queue.Connect(ctxT(t), cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	srv.Shutdown()
	srv.WaitForShutdown()
	cfg.Listen = strings.TrimPrefix(url, "nats://") // same port, same store
	srv2, err := queue.StartEmbedded(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv2.Shutdown(); srv2.WaitForShutdown() }()
	eventually(t, "reconnect", func() (bool, string) {
		return logs.FilterMessage("NATS reconnected").Len() == 1, fmt.Sprint(logs.All())
	})
	if logs.FilterMessageSnippet("NATS disconnected").Len() == 0 {
		t.Error("disconnect not logged")
	}
}
