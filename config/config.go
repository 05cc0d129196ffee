// Package config reads setrelay's YAML configuration: one file describing the
// issuer, the signing keys, NATS, the worker pool, the ops server and every
// receiver. Load expands ${NAME} environment references, reads *_file
// secrets, fills defaults and validates the whole file at once, so an
// operator sees every mistake, with its YAML path, in one run.
//
// Relative file paths (keys, secret files, TLS material, store_dir) are
// resolved against the process's working directory, as nats-server and most
// command-line tools do.
package config

import (
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/worker"
)

// Default values. They are exported so documentation and tests can name them.
// A default that a package also applies to its own zero values is declared
// in that package and only named here, so the two can never disagree.
const (
	DefaultStoreDir        = queue.DefaultStoreDir
	DefaultNATSListen      = queue.DefaultListen
	DefaultReplicas        = 1
	DefaultMaxAckPending   = queue.DefaultMaxAckPending
	DefaultAckWait         = queue.DefaultAckWait
	DefaultDuplicateWindow = queue.DefaultDuplicateWindow
	// MaxDuplicateWindow caps nats.duplicate_window: the server keeps every
	// intent id of the window in memory (about 100 bytes plus the id), so
	// a week of a busy stream is already gigabytes.
	MaxDuplicateWindow = 7 * 24 * time.Hour
	DefaultConcurrency = worker.DefaultConcurrency
	DefaultGracePeriod = worker.DefaultGracePeriod
	DefaultFetchWait   = worker.DefaultFetchWait
	// MinFetchWait and MaxFetchWait bound worker.fetch_wait: shorter
	// floods the server with pull requests from idle receivers, longer
	// delays every shutdown of an idle process by as much.
	MinFetchWait            = 100 * time.Millisecond
	MaxFetchWait            = 30 * time.Second
	DefaultOpsListen        = "127.0.0.1:9464"
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "json"
	DefaultTimeout          = push.DefaultTimeout
	DefaultConnectTimeout   = push.DefaultConnectTimeout
	DefaultMaxRetryAfter    = push.DefaultMaxRetryAfter
	DefaultRetryInitial     = worker.DefaultRetryInitial
	DefaultRetryMax         = worker.DefaultRetryMax
	DefaultRetryMaxAttempts = worker.DefaultRetryMaxAttempts
	DefaultRetryMaxAge      = worker.DefaultRetryMaxAge
	DefaultPauseThreshold   = worker.DefaultPauseThreshold
	DefaultPauseInitial     = worker.DefaultPauseInitial
	DefaultPauseMax         = worker.DefaultPauseMax
	DefaultProbeInterval    = worker.DefaultProbeInterval
	DefaultAuthStyle        = AuthStyleBasic
	DefaultSubjectPlacement = PlacementSubID
)

// Subject placements, as written in the configuration.
const (
	PlacementSubID   = "sub_id"
	PlacementInEvent = "in_event"
	PlacementBoth    = "both"
)

// Client authentication styles at the token endpoint.
const (
	AuthStyleBasic = "basic"
	AuthStyleForm  = "form"
)

// Config is the whole of setrelay's configuration.
type Config struct {
	// Issuer is the iss claim of every SET: the transmitter's issuer URL.
	Issuer string `yaml:"issuer" json:"issuer"`
	// Keys are the signing keys. Each receiver signs with one of them; all
	// public keys are published at /jwks.json so keys can be rotated.
	Keys []Key `yaml:"keys" json:"keys"`
	// NATS says where the queue lives: an external cluster, or the embedded
	// server when URL is empty.
	NATS NATS `yaml:"nats" json:"nats"`
	// Worker sizes the delivery pool.
	Worker Worker `yaml:"worker" json:"worker"`
	// Ops is the operations HTTP server (/metrics, /healthz, /readyz, /jwks.json).
	Ops Ops `yaml:"ops" json:"ops"`
	// Log configures the process logger.
	Log Log `yaml:"log" json:"log"`
	// Receivers are the SSF receivers SETs are pushed to.
	Receivers []Receiver `yaml:"receivers" json:"receivers"`
	// SSF is the SSF 1.0 transmitter API, for receivers that manage their
	// own streams (off by default).
	SSF SSF `yaml:"ssf" json:"ssf"`

	// Source is the file Load read the configuration from ("" when built
	// in code), so that messages can name the command to run with it.
	Source string `yaml:"-" json:"-"`

	// credentialsUnread is set by QueueOnly: the receivers' credentials
	// are placeholders, not checked and never to be used.
	credentialsUnread bool
}

// CredentialsUnread reports whether c was loaded with QueueOnly, so that
// its receivers' credentials are placeholders a relay must not use.
func (c *Config) CredentialsUnread() bool { return c.credentialsUnread }

// Key is one signing key.
type Key struct {
	// ID is the JWK "kid", and the name receivers use to pick this key.
	ID string `yaml:"id" json:"id"`
	// File is a PEM (PKCS#1, PKCS#8, SEC1) or JWK file holding the private key.
	// Exactly one of File, PKCS11 and KMS is set.
	File string `yaml:"file" json:"file"`
	// PKCS11 is a key that never leaves a PKCS#11 token (an HSM, SoftHSM,
	// YubiHSM, CloudHSM ...).
	PKCS11 *PKCS11Key `yaml:"pkcs11,omitempty" json:"pkcs11,omitempty"`
	// KMS is a key that never leaves a cloud KMS (AWS KMS).
	KMS *KMSKey `yaml:"kms,omitempty" json:"kms,omitempty"`
	// Alg is the JWS algorithm: RS256, PS256, ES256, ES384 or EdDSA (file
	// keys only). It is checked against the key's real type at start-up.
	Alg string `yaml:"alg" json:"alg"`
	// MaxSignRate caps signatures per second with this key, to stay under a
	// KMS account's request quota; 0 is no cap.
	MaxSignRate float64 `yaml:"max_sign_rate,omitempty" json:"max_sign_rate,omitempty"`
	// InsecurePermissions accepts a key file readable by group or others,
	// which is otherwise refused as OpenSSH refuses such identity files.
	// Only for mounts whose mode cannot be set (prefer a Kubernetes secret's
	// defaultMode: 0400).
	InsecurePermissions bool `yaml:"insecure_permissions" json:"insecure_permissions"`
}

// NATS configures the connection to JetStream, or the embedded server.
type NATS struct {
	// URL of the NATS servers (comma-separated). Empty starts an embedded
	// server. The NATS_URL environment variable overrides it.
	URL string `yaml:"url" json:"url"`
	// StoreDir is the embedded server's JetStream file store.
	StoreDir string `yaml:"store_dir" json:"store_dir"`
	// Listen is the embedded server's client address, so that producers and
	// the publish/dlq commands can reach it.
	Listen string `yaml:"listen" json:"listen"`
	// ServerConfig is a nats-server configuration file for the embedded
	// server: accounts, users, subject permissions and TLS (see
	// configs/nats/embedded.conf). A listen address beyond loopback is
	// refused unless this file makes clients authenticate and use TLS.
	// Its own listen, port and store_dir are replaced by the settings here.
	ServerConfig string `yaml:"server_config" json:"server_config"`
	// User and Password authenticate with a user name.
	User     string `yaml:"user" json:"user"`
	Password Secret `yaml:"password" json:"password"`
	// Token authenticates with a token.
	Token Secret `yaml:"token" json:"token"`
	// Creds is a .creds file (JWT and nkey seed).
	Creds string `yaml:"creds" json:"creds"`
	// NKey is an nkey seed file.
	NKey string `yaml:"nkey" json:"nkey"`
	// TLS verifies the server (CA) and presents a client certificate.
	TLS TLS `yaml:"tls" json:"tls"`
	// Replicas of the streams and consumers: 1 embedded, 3 in a cluster.
	Replicas int `yaml:"replicas" json:"replicas"`
	// MaxAckPending bounds unacknowledged messages per receiver consumer.
	MaxAckPending int `yaml:"max_ack_pending" json:"max_ack_pending"`
	// AckWait is how long JetStream waits for an ack before redelivering.
	AckWait time.Duration `yaml:"ack_wait" json:"ack_wait"`
	// DuplicateWindow is how long the intents stream remembers an intent
	// id: a publish or backfill re-run within it is acknowledged as a
	// duplicate instead of stored again. Beyond it, receivers get the SET
	// again with the same jti.
	DuplicateWindow time.Duration `yaml:"duplicate_window" json:"duplicate_window"`
}

// Embedded reports whether setrelay runs its own NATS server.
func (n NATS) Embedded() bool { return n.URL == "" }

// TLS names PEM files for a TLS client: the CA to trust and an optional
// client certificate and key.
type TLS struct {
	CA   string `yaml:"ca" json:"ca"`
	Cert string `yaml:"cert" json:"cert"`
	Key  string `yaml:"key" json:"key"`
}

// Worker sizes the delivery pool.
type Worker struct {
	// Concurrency is the number of pushes in flight at once in this process.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// GracePeriod is how long in-flight pushes may run on after a shutdown
	// signal before what is left is handed back to JetStream.
	GracePeriod time.Duration `yaml:"grace_period" json:"grace_period"`
	// FetchWait is how long an idle receiver's pull request waits for a
	// message. A shutdown waits for outstanding ones (abandoning one could
	// strand a message until ack_wait), so it bounds how long an idle
	// process takes to stop; each idle receiver sends one request per
	// FetchWait.
	FetchWait time.Duration `yaml:"fetch_wait" json:"fetch_wait"`
}

// Ops configures the operations HTTP server.
type Ops struct {
	// Listen is the address of /metrics, /healthz, /readyz and /jwks.json.
	Listen string `yaml:"listen" json:"listen"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level" json:"level"`
	// Format is json (production) or console (humans).
	Format string `yaml:"format" json:"format"`
}

// Receiver is one SSF receiver and how to deliver to it.
type Receiver struct {
	// Name identifies the receiver in intents ("receivers"), metrics, logs,
	// the consumer name and the dead-letter subject.
	Name string `yaml:"name" json:"name"`
	// Endpoint is the RFC 8935 push URL.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
	// Audience is the aud claim: a string or a list.
	Audience Audience `yaml:"audience" json:"audience"`
	// AudienceAsArray writes aud as a JSON array even with one audience.
	AudienceAsArray bool `yaml:"audience_as_array" json:"audience_as_array"`
	// Key is the id of the signing key (keys[].id) for this receiver.
	Key string `yaml:"key" json:"key"`
	// SendKID puts the key id in the JWS header. Default true; GOV.UK's own
	// transmitter sends none.
	SendKID *bool `yaml:"send_kid" json:"send_kid"`
	// Subject is where the subject identifier goes: sub_id (SSF 1.0),
	// in_event (RISC, GOV.UK) or both.
	Subject string `yaml:"subject" json:"subject"`
	// Events are the event types this receiver requested, as aliases
	// (risc.account-disabled) or URIs. Empty means every type.
	Events []string `yaml:"events" json:"events"`
	// AllowPrivateTypes accepts event-type URIs outside CAEP/RISC/SSF, such
	// as GOV.UK's https://vocab.account.gov.uk/secevent/v1/... types.
	AllowPrivateTypes bool `yaml:"allow_private_types" json:"allow_private_types"`
	// Auth is how setrelay authenticates to the receiver. Omit it for a
	// receiver that asks for no credentials.
	Auth Auth `yaml:"auth" json:"auth"`
	// InsecureHTTP allows http:// endpoints and token URLs (local testing only).
	InsecureHTTP bool `yaml:"insecure_http" json:"insecure_http"`
	// Timeout bounds one push request, including the response.
	Timeout time.Duration `yaml:"timeout" json:"timeout"`
	// ConnectTimeout bounds the TCP and TLS handshake.
	ConnectTimeout time.Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// MaxRetryAfter caps a receiver's Retry-After. Default:
	// DefaultMaxRetryAfter (1 h), the push client's own default.
	MaxRetryAfter time.Duration `yaml:"max_retry_after" json:"max_retry_after"`
	// MaxConns bounds connections to this receiver; 0 leaves it to the push client.
	MaxConns int `yaml:"max_conns" json:"max_conns"`
	// RateLimit is SETs per second to this receiver from the whole fleet
	// (every process sharing the NATS cluster, see package fleet); 0 is unlimited.
	RateLimit float64 `yaml:"rate_limit" json:"rate_limit"`
	// MaxInFlight bounds the pushes to this receiver in flight at once
	// across the whole fleet; 0 is unlimited.
	MaxInFlight int `yaml:"max_in_flight" json:"max_in_flight"`
	// Retry is the retry policy for retryable failures.
	Retry Retry `yaml:"retry" json:"retry"`
	// Pause pauses the receiver's consumer (in every process) while it is down.
	Pause Pause `yaml:"pause" json:"pause"`
	// TLS trusts a private CA and presents a client certificate (mTLS).
	TLS TLS `yaml:"tls" json:"tls"`
	// Ordering is "none" (default: fastest, no order) or "subject": SETs
	// about one subject reach this receiver in the order their intents
	// were stored, across every process (README, "Per-subject ordering").
	Ordering string `yaml:"ordering" json:"ordering"`
	// Partitions is how many subjects of an ordered receiver can be in
	// flight at once: a power of two from 8 to 1024 (default 256).
	Partitions int `yaml:"partitions" json:"partitions"`
	// OnDeadLetter, for an ordered receiver, is what a dead-lettered
	// intent does to later intents about its subject: "continue" (default)
	// delivers them; "hold" dead-letters them too (reason subject_held)
	// until the held dead letters are replayed or purged.
	OnDeadLetter string `yaml:"on_dead_letter" json:"on_dead_letter"`
}

// Ordering values.
const (
	OrderingNone       = "none"
	OrderingSubject    = "subject"
	DeadLetterContinue = "continue"
	DeadLetterHold     = "hold"
)

// Ordered reports whether the receiver asked for per-subject ordering.
func (r Receiver) Ordered() bool { return r.Ordering == OrderingSubject }

// EventTypes returns the requested event types resolved to URIs, in the
// configured order; nil means every type. Validate has already rejected
// names that do not resolve, so none are dropped for a loaded Config.
func (r Receiver) EventTypes() []string {
	if len(r.Events) == 0 {
		return nil
	}
	out := make([]string, 0, len(r.Events))
	for _, e := range r.Events {
		if uri, _ := intent.ResolveType(e); uri != "" {
			out = append(out, uri)
		}
	}
	return out
}

// KID reports whether the JWS header carries the key id (default true).
func (r Receiver) KID() bool { return r.SendKID == nil || *r.SendKID }

// Auth is either OAuth 2.0 client credentials (TokenURL, ClientID,
// ClientSecret) or a static Authorization header, never both.
type Auth struct {
	TokenURL string `yaml:"token_url" json:"token_url"`
	ClientID string `yaml:"client_id" json:"client_id"`
	// ClientSecret, or ClientSecretFile naming a file that holds it.
	ClientSecret     Secret `yaml:"client_secret" json:"client_secret"`
	ClientSecretFile string `yaml:"client_secret_file" json:"client_secret_file"`
	// Scopes requested with the token.
	Scopes []string `yaml:"scopes" json:"scopes"`
	// AuthStyle is how the client authenticates at the token endpoint:
	// basic (HTTP Basic, the default, what GOV.UK uses) or form.
	AuthStyle string `yaml:"auth_style" json:"auth_style"`
	// AuthorizationHeader is sent as is, for receivers that issue a static
	// credential; or AuthorizationHeaderFile naming a file holding it.
	AuthorizationHeader     Secret `yaml:"authorization_header" json:"authorization_header"`
	AuthorizationHeaderFile string `yaml:"authorization_header_file" json:"authorization_header_file"`
}

// OAuth reports whether client-credentials authentication is configured.
func (a Auth) OAuth() bool { return a.TokenURL != "" || a.ClientID != "" || a.ClientSecret != "" }

// Retry is a receiver's retry policy.
type Retry struct {
	// Initial is the first backoff delay.
	Initial time.Duration `yaml:"initial" json:"initial"`
	// Max caps one backoff delay.
	Max time.Duration `yaml:"max" json:"max"`
	// MaxAttempts dead-letters a SET after this many deliveries.
	MaxAttempts int `yaml:"max_attempts" json:"max_attempts"`
	// MaxAge dead-letters a SET this long after it was published.
	MaxAge time.Duration `yaml:"max_age" json:"max_age"`
}

// Pause controls pausing a failing receiver's consumer.
type Pause struct {
	// Threshold is the number of consecutive retryable failures that pause
	// it; -1 never pauses.
	Threshold int `yaml:"threshold" json:"threshold"`
	// Initial is the first pause; it doubles while the receiver stays down.
	Initial time.Duration `yaml:"initial" json:"initial"`
	// Max caps one pause, and the backoff between probes of a blocked
	// receiver.
	Max time.Duration `yaml:"max" json:"max"`
	// ProbeInterval is how often one process of the fleet probes a paused
	// or blocked receiver (default 10s, at most initial), whatever the
	// pause's length, so a recovery is noticed within it.
	ProbeInterval time.Duration `yaml:"probe_interval" json:"probe_interval"`
}
