package push

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/setrelay/setrelay/secret"
)

// Version names this build of setrelay in the User-Agent header. Release
// builds set it with -ldflags "-X github.com/setrelay/setrelay/push.Version=v1.2.3".
var Version = "dev"

// Defaults applied by New to zero Config fields.
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultTimeout        = 10 * time.Second
	DefaultMaxConns       = 16
	// DefaultRefreshBefore is how long before its expiry a token is replaced,
	// so that a token never expires between being attached and being checked.
	DefaultRefreshBefore = time.Minute
)

// Auth styles for AuthConfig.AuthStyle.
const (
	// AuthStyleBasic sends the client id and secret in an HTTP Basic
	// Authorization header (RFC 6749 2.3.1); GOV.UK's endpoint wants it.
	AuthStyleBasic = "basic"
	// AuthStyleForm sends them as client_id/client_secret form parameters.
	AuthStyleForm = "form"
)

// Config describes one receiver. It holds secrets only as secret.Value, so
// it is safe to print or log with %+v.
type Config struct {
	// Name identifies the receiver in logs, metrics and errors.
	Name string
	// Endpoint is the receiver's RFC 8935 push URL. It must be https unless
	// InsecureHTTP is set.
	Endpoint string
	// Auth selects OAuth client credentials, a static Authorization header or
	// nothing.
	Auth AuthConfig
	// InsecureHTTP allows http:// endpoint and token URLs, for local
	// development only: SETs and tokens then cross the network in clear.
	InsecureHTTP bool
	// ConnectTimeout bounds the TCP connect and the TLS handshake (default
	// 5 s); Timeout bounds each whole HTTP attempt, body included (default
	// 10 s), and also each token request.
	ConnectTimeout, Timeout time.Duration
	// MaxRetryAfter caps a receiver's Retry-After (default
	// DefaultMaxRetryAfter, 1 h).
	MaxRetryAfter time.Duration
	// TLS configures server verification and the optional client certificate.
	TLS TLSConfig
	// MaxConns is how many pushes run concurrently against this receiver
	// (the worker count). The transport keeps that many idle connections per
	// host, where Go's default of 2 would churn connections. Default 16.
	MaxConns int
	// UserAgent overrides the default "setrelay/<Version>".
	UserAgent string
	// PublicOnly refuses, on every connection, endpoints whose address is
	// not public (PublicIP). For endpoints chosen by the receiver itself
	// (SSF streams), so that it cannot make the transmitter post into its
	// own network; a refusal blocks the receiver (ReasonNonPublicAddress).
	PublicOnly bool
}

// AuthConfig is how the client authenticates to the receiver. Set TokenURL
// (with ClientID and ClientSecret) for OAuth 2.0 client credentials, or
// AuthorizationHeader for a static header (SSF's authorization_header), or
// neither.
type AuthConfig struct {
	// TokenURL is the full URL of the token endpoint (what GOV.UK's page
	// calls "the /authorize endpoint").
	TokenURL string
	// ClientID and ClientSecret are the credentials the receiver issued.
	ClientID     string
	ClientSecret secret.Value
	// Scopes are requested with the token, e.g. "messages/write".
	Scopes []string
	// AuthStyle is "basic" (the default) or "form".
	AuthStyle string
	// RefreshBefore replaces a token this long before it expires (default
	// 1 min), so that it never expires in flight.
	RefreshBefore time.Duration
	// AuthorizationHeader is sent verbatim as the Authorization header.
	AuthorizationHeader secret.Value
}

// TLSConfig configures TLS towards the receiver and its token endpoint.
// Server certificates are always verified; the minimum version is TLS 1.2.
type TLSConfig struct {
	// CAFile is a PEM bundle of extra roots, trusted in addition to the
	// system roots (the token endpoint is often on a public CA while the
	// receiver uses a private one).
	CAFile string
	// RootCAs, when set, replaces the system roots and CAFile entirely.
	// It is meant for programs embedding setrelay and for tests.
	RootCAs *x509.CertPool
	// CertFile and KeyFile hold a PEM client certificate and key for mTLS.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server certificate.
	ServerName string
}

// ErrConfig reports an invalid receiver configuration.
var ErrConfig = errors.New("push: invalid config")

// withDefaults returns cfg with zero fields defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxRetryAfter <= 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "setrelay/" + Version
	}
	if cfg.Auth.AuthStyle == "" {
		cfg.Auth.AuthStyle = AuthStyleBasic
	}
	if cfg.Auth.RefreshBefore <= 0 {
		cfg.Auth.RefreshBefore = DefaultRefreshBefore
	}
	return cfg
}

// validate checks a defaulted config; every problem is reported at once.
func (cfg Config) validate() error {
	var problems []string
	if cfg.Name == "" {
		problems = append(problems, "name is empty")
	}
	if p := checkURL("endpoint", cfg.Endpoint, cfg.InsecureHTTP); p != "" {
		problems = append(problems, p)
	}
	a := cfg.Auth
	switch {
	case a.TokenURL != "" && a.AuthorizationHeader.IsSet():
		problems = append(problems, "auth: set either token_url or authorization_header, not both")
	case a.TokenURL != "":
		if p := checkURL("auth.token_url", a.TokenURL, cfg.InsecureHTTP); p != "" {
			problems = append(problems, p)
		}
		if a.ClientID == "" {
			problems = append(problems, "auth.client_id is empty")
		}
		if !a.ClientSecret.IsSet() {
			problems = append(problems, "auth.client_secret is empty")
		}
		if a.AuthStyle != AuthStyleBasic && a.AuthStyle != AuthStyleForm {
			problems = append(problems, fmt.Sprintf("auth.auth_style %q is neither %q nor %q", a.AuthStyle, AuthStyleBasic, AuthStyleForm))
		}
	case a.ClientID != "" || a.ClientSecret.IsSet():
		problems = append(problems, "auth: client credentials given without token_url")
	}
	if strings.ContainsAny(a.AuthorizationHeader.Reveal(), "\r\n") {
		problems = append(problems, "auth.authorization_header contains a line break")
	}
	if (cfg.TLS.CertFile == "") != (cfg.TLS.KeyFile == "") {
		problems = append(problems, "tls: cert_file and key_file go together")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: receiver %q: %s", ErrConfig, cfg.Name, strings.Join(problems, "; "))
	}
	return nil
}

// checkURL returns a problem description, or "" when raw is acceptable.
func checkURL(field, raw string, insecure bool) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Sprintf("%s %q is not an absolute URL", field, secret.URL(raw))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !insecure {
			return fmt.Sprintf("%s %q uses http://; set insecure_http: true to allow it (local development only)", field, secret.URL(raw))
		}
	default:
		return fmt.Sprintf("%s %q: scheme must be https", field, secret.URL(raw))
	}
	if u.User != nil {
		return fmt.Sprintf("%s %q: credentials in the URL are not allowed; use auth", field, secret.URL(raw))
	}
	if p := secret.CredentialInQuery(raw); p != "" {
		return fmt.Sprintf("%s %q carries %s in its query string, where every log and proxy that echoes the URL would show it; remove it and use auth", field, secret.URL(raw), p)
	}
	return ""
}

// tlsConfig builds the client TLS configuration.
func (t TLSConfig) tlsConfig() (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	switch {
	case t.RootCAs != nil:
		c.RootCAs = t.RootCAs
	case t.CAFile != "":
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: tls.ca_file: %w", ErrConfig, err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: tls.ca_file %q holds no PEM certificate", ErrConfig, t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error names the files and the parse problem, never key bytes.
			return nil, fmt.Errorf("%w: tls client certificate: %w", ErrConfig, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// oauthStyle maps the config's auth style to the oauth2 library's.
func oauthStyle(s string) oauth2.AuthStyle {
	if s == AuthStyleForm {
		return oauth2.AuthStyleInParams
	}
	return oauth2.AuthStyleInHeader
}
