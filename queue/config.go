package queue

import (
	"fmt"
	"os"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/setrelay/setrelay/secret"
)

// Defaults applied by Config.withDefaults when a field is left zero.
const (
	// DefaultStoreDir is where the embedded server keeps its file store.
	DefaultStoreDir = "./data"
	// DefaultListen is the embedded server's client address: loopback only,
	// so that CLI commands and local producers can reach it.
	DefaultListen = "127.0.0.1:4222"
	// DefaultMaxAckPending bounds unacknowledged messages per receiver consumer.
	DefaultMaxAckPending = 1000
	// DefaultAckWait is how long the server waits for an ack before
	// redelivering; the worker heartbeats with InProgress while a push is slow.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxDeliver is the consumer's safety net, well above the worker's
	// default attempt limit (12) plus shutdown hand-backs, which also count.
	DefaultMaxDeliver = 100
	// DefaultDuplicateWindow is how long an intent id deduplicates. It bounds
	// how late a backfill can be re-run safely. The server keeps every id seen
	// in the window in memory (roughly the id's length plus ~100 bytes), so a
	// longer window costs memory for large backfills.
	DefaultDuplicateWindow = time.Hour
)

// Config is everything the queue needs, filled by the config package from the
// `nats:` section. Zero values take the defaults above; ApplyEnv lets the
// standard NATS environment variables override it.
type Config struct {
	// URL of the NATS servers (comma-separated). Empty means the embedded
	// server: clients connect to nats://Listen.
	URL string
	// StoreDir is the embedded server's JetStream file store.
	StoreDir string
	// Listen is the embedded server's client address (host:port). Port -1
	// picks a free port (tests).
	Listen string
	// Replicas for both streams and the consumers: 1 embedded, 3 in a cluster.
	Replicas int
	// ServerConfig is a nats-server configuration file for the embedded
	// server: accounts, users, permissions and TLS. Its listen address,
	// store directory and JetStream settings are replaced by Listen and
	// StoreDir. A Listen beyond loopback requires it, with authentication
	// and TLS.
	ServerConfig string

	// Authentication; at most one of Creds, NKey, User/Password, Token.
	Creds    string // path of a .creds file
	NKey     string // path of an nkey seed file
	User     string
	Password secret.Value
	Token    secret.Value
	// TLS: CA verifies the server; Cert and Key are the client certificate.
	CA, Cert, Key string

	MaxAckPending int
	AckWait       time.Duration
	MaxDeliver    int
	// StreamMaxBytes and StreamMaxMsgs cap the intents stream; when reached,
	// publishes fail with ErrStreamFull. Zero means unlimited (bounded by the
	// server's JetStream storage limit, which also fails publishes).
	StreamMaxBytes  int64
	StreamMaxMsgs   int64
	DuplicateWindow time.Duration

	// Ordered maps each receiver with per-subject ordering to its number
	// of partitions (ValidPartitions); Provision gives it one consumer per
	// partition (PartitionConsumerConfig).
	Ordered map[string]int
}

// ApplyEnv overrides fields from the environment, with the usual NATS names:
// NATS_URL, NATS_CREDS, NATS_NKEY, NATS_CA, NATS_CERT and NATS_KEY. The
// environment wins over the configuration file so that an operator can point
// a command at another server without editing the file.
func (c *Config) ApplyEnv() {
	for _, e := range []struct {
		name string
		dst  *string
	}{
		{"NATS_URL", &c.URL},
		{"NATS_CREDS", &c.Creds},
		{"NATS_NKEY", &c.NKey},
		{"NATS_CA", &c.CA},
		{"NATS_CERT", &c.Cert},
		{"NATS_KEY", &c.Key},
	} {
		if v, ok := os.LookupEnv(e.name); ok && v != "" {
			*e.dst = v
		}
	}
}

// withDefaults returns c with zero fields set to the package defaults.
func (c Config) withDefaults() Config {
	if c.StoreDir == "" {
		c.StoreDir = DefaultStoreDir
	}
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = DefaultMaxAckPending
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	return c
}

// String describes the configuration with secrets redacted, including a
// user:password in the URL, so that a Config can be logged or printed in an
// error without leaking the password or token.
func (c Config) String() string {
	return fmt.Sprintf("queue.Config{URL:%q StoreDir:%q Listen:%q Replicas:%d Creds:%q NKey:%q User:%q Password:%q Token:%q CA:%q Cert:%q Key:%q MaxAckPending:%d AckWait:%s MaxDeliver:%d StreamMaxBytes:%d StreamMaxMsgs:%d DuplicateWindow:%s}",
		secret.URLList(c.URL), c.StoreDir, c.Listen, c.Replicas, c.Creds, c.NKey, c.User, c.Password, c.Token,
		c.CA, c.Cert, c.Key, c.MaxAckPending, c.AckWait, c.MaxDeliver, c.StreamMaxBytes, c.StreamMaxMsgs, c.DuplicateWindow)
}

// GoString redacts too, for %#v.
func (c Config) GoString() string { return c.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s) print the redacted form.
func (c Config) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// MarshalLogObject lets zap.Object / zap.Any log the configuration without
// secrets (the URL's too); zap would otherwise reflect over the fields.
func (c Config) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("url", secret.URLList(c.URL))
	enc.AddString("store_dir", c.StoreDir)
	enc.AddString("listen", c.Listen)
	enc.AddInt("replicas", c.Replicas)
	enc.AddString("creds", c.Creds)
	enc.AddString("nkey", c.NKey)
	enc.AddString("user", c.User)
	enc.AddString("password", c.Password.String())
	enc.AddString("token", c.Token.String())
	enc.AddString("ca", c.CA)
	enc.AddString("cert", c.Cert)
	enc.AddString("key", c.Key)
	enc.AddInt("max_ack_pending", c.MaxAckPending)
	enc.AddDuration("ack_wait", c.AckWait)
	enc.AddInt("max_deliver", c.MaxDeliver)
	enc.AddInt64("stream_max_bytes", c.StreamMaxBytes)
	enc.AddInt64("stream_max_msgs", c.StreamMaxMsgs)
	enc.AddDuration("duplicate_window", c.DuplicateWindow)
	return nil
}
