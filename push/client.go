package push

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/secret"
	"github.com/setrelay/setrelay/tracing"
)

// Shared, read-only request header values (see attempt).
var (
	hdrContentType = []string{"application/secevent+jwt"}
	hdrAccept      = []string{"application/json"}
)

// Client pushes SETs to one receiver. Build one per receiver and share it
// between all workers: it holds the receiver's connection pool and its one
// access token. It is safe for concurrent use.
type Client struct {
	name          string
	endpoint      string
	url           *url.URL // endpoint, parsed once; never modified
	userAgent     []string // shared, read-only header value
	timeout       time.Duration
	maxRetryAfter time.Duration
	hc            *http.Client
	auth          credentials // nil: no Authorization header
	log           *zap.Logger
	m             *Metrics
	delivered     *deliveredMetrics // m's series for this receiver's deliveries
	now           func() time.Time
	host          string // server.address and server.port of spans
	port          int
}

// New validates cfg, applies defaults and builds the client. It fails on an
// http:// URL without InsecureHTTP, missing credentials, an unreadable CA
// bundle or client certificate. log and m may be nil.
func New(cfg Config, log *zap.Logger, m *Metrics) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tlsConf, err := cfg.TLS.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("receiver %q: %w", cfg.Name, err)
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.With(zap.String("receiver", cfg.Name))
	for _, raw := range []string{cfg.Endpoint, cfg.Auth.TokenURL} {
		if host, ok := cleartextHost(raw); ok {
			// insecure_http is meant for a receiver on this machine; to
			// any other host the client secret, the bearer token and the
			// SETs cross the network readable by anyone on the path.
			log.Warn("insecure_http: credentials and SETs are sent unencrypted to a host that is not loopback; use https outside local development",
				zap.String("host", host))
		}
	}

	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	dial, proxy := dialer.DialContext, http.ProxyFromEnvironment
	if cfg.PublicOnly {
		dial, proxy = publicOnlyDial(dialer, proxyHostFor(cfg.Endpoint)), publicOnlyProxy(proxy)
	}
	tr := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.MaxConns + 2,
		MaxIdleConnsPerHost:   cfg.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// The default (10 MiB) lets a misbehaving receiver make every
		// concurrent push hold megabytes of headers; real answers carry
		// a few KiB.
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		name:          cfg.Name,
		endpoint:      cfg.Endpoint,
		url:           parseEndpoint(cfg.Endpoint),
		userAgent:     []string{cfg.UserAgent},
		timeout:       cfg.Timeout,
		maxRetryAfter: cfg.MaxRetryAfter,
		// Each attempt gets its own context deadline, which also covers
		// reading the body, so the push client has no Timeout of its own.
		hc:        &http.Client{Transport: tr, CheckRedirect: noRedirect},
		log:       log,
		m:         m,
		delivered: m.forDelivered(cfg.Name),
		now:       time.Now,
	}
	c.host, c.port = hostPort(cfg.Endpoint)
	switch {
	case cfg.Auth.TokenURL != "":
		// The token client shares the transport (same TLS settings, and
		// the connection to the token endpoint stays warm) but has a
		// Timeout, because the oauth2 library's fetch takes no deadline.
		thc := &http.Client{Transport: traceTransport{tr}, CheckRedirect: noRedirect, Timeout: cfg.Timeout}
		c.auth = newOAuthAuth(newFetcher(cfg.Name, cfg.Auth, thc, cfg.MaxRetryAfter, log, m), cfg.Auth.RefreshBefore)
	case cfg.Auth.AuthorizationHeader.IsSet():
		c.auth = &staticAuth{value: []string{cfg.Auth.AuthorizationHeader.Reveal()}}
	}
	return c, nil
}

// String names the receiver and endpoint; a Client's fields include the
// token machinery, which must never be printed.
func (c Client) String() string {
	return fmt.Sprintf("push.Client{receiver=%q endpoint=%q}", c.name, secret.URL(c.endpoint))
}

// GoString is String, so %#v cannot dump the fields either.
func (c Client) GoString() string { return c.String() }

// Format prints String for every verb.
func (c Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// Receiver returns the receiver's configured name.
func (c *Client) Receiver() string { return c.name }

// CloseIdleConnections closes the pooled connections, for shutdown.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Push sends one compact JWS to the receiver and reports the outcome. It
// never returns Refresh: when the receiver refuses the access token, Push
// drops it, gets a new one and tries exactly once more; a second refusal is
// Blocked (authentication_failed). On access_denied it drops the token too, so that the caller's next
// attempt, after its backoff, uses a fresh one. Push honours ctx, and each
// HTTP attempt is also bounded by Config.Timeout.
func (c *Client) Push(ctx context.Context, jws []byte) Result {
	start := time.Now()
	ctx, endSpan := c.tracePush(ctx)
	r, handle := c.attempt(ctx, jws)
	switch {
	case r.Outcome == Refresh:
		if c.auth != nil && c.auth.refused(handle) {
			c.log.Info("receiver refused the access token; fetching a new one and retrying once",
				zap.Int("status", r.Status), zap.String("err", r.Err))
			first := r.Attempts
			r, _ = c.attempt(ctx, jws)
			r.Attempts += first
		}
		if r.Outcome == Refresh {
			// Refused again with a token fetched just now (or refused
			// with credentials that cannot change: a static header, or
			// none): the credentials are wrong for every SET.
			r.Outcome = Blocked
		}
	case r.Reason == ReasonAccessDenied && c.auth != nil:
		c.auth.refused(handle)
	}
	r.Receiver = c.name
	c.m.push(c.name, c.delivered, &r, time.Since(start))
	endSpan(r)
	return r
}

// attempt makes one HTTP request (after getting the Authorization header)
// and classifies its result.
func (c *Client) attempt(ctx context.Context, jws []byte) (Result, any) {
	var authz []string
	var handle any
	if c.auth != nil {
		var err error
		authz, handle, err = c.auth.authorization(ctx)
		if err != nil {
			return Classify(0, nil, nil, err, c.now(), c.maxRetryAfter), handle
		}
	}

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := c.newRequest(ctx, jws)
	if err != nil {
		return Classify(0, nil, nil, err, c.now(), c.maxRetryAfter), handle
	}
	// The value slices are shared between requests and never modified:
	// net/http only reads request headers, and this saves an allocation per
	// header on every push.
	req.Header = http.Header{
		"Content-Type": hdrContentType,
		"Accept":       hdrAccept,
		"User-Agent":   c.userAgent,
	}
	if authz != nil {
		req.Header["Authorization"] = authz
	}
	// A receiver that traces joins the worker's trace.
	tracing.InjectHTTP(ctx, req.Header)
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// The url.Error names the endpoint, whose query may hold
			// values that must not reach logs and dead letters.
			err = secret.URLError(ue)
		}
		r := Classify(0, nil, nil, err, c.now(), c.maxRetryAfter)
		r.Attempts = 1
		return r, handle
	}
	var body []byte
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// RFC 8935 receivers answer 202 with no body, but some send one:
		// it is read (bounded, so the connection can be reused) and ignored.
		_, _ = io.CopyN(io.Discard, resp.Body, MaxBodyRead)
	} else {
		// A read error leaves whatever arrived; the status decides anyway.
		body, _ = io.ReadAll(io.LimitReader(resp.Body, MaxBodyRead))
		if len(authz) > 0 && authz[0] != "" {
			body = secret.NewScrubber(authz[0]).Bytes(body)
		}
	}
	// Closing after at most MaxBodyRead bytes: when the body was longer the
	// connection is dropped rather than drained, which is cheaper than
	// reading megabytes from a misbehaving receiver.
	_ = resp.Body.Close()
	r := Classify(resp.StatusCode, resp.Header, body, nil, c.now(), c.maxRetryAfter)
	scrubResult(&r, authz)
	r.Attempts = 1
	return r, handle
}

// parseEndpoint parses the endpoint for newRequest; nil leaves the parsing
// (and its error) to http.NewRequestWithContext.
func parseEndpoint(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil
	}
	u.Host = strings.TrimSuffix(u.Host, ":") // "host:" means the default port, as NewRequest has it
	return u
}

// newRequest is http.NewRequestWithContext(ctx, POST, endpoint, jws)
// without parsing the endpoint again for every SET: the same request, with
// a copy of the URL parsed in New.
func (c *Client) newRequest(ctx context.Context, jws []byte) (*http.Request, error) {
	if c.url == nil || len(jws) == 0 {
		return http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(jws))
	}
	u := *c.url
	req := &http.Request{
		Method:        http.MethodPost,
		URL:           &u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Body:          io.NopCloser(bytes.NewReader(jws)),
		ContentLength: int64(len(jws)),
		// As NewRequest sets it for a bytes.Reader: the transport may
		// need the body again to retry on a connection that died idle.
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(jws)), nil },
		Host:    u.Host,
	}
	return req.WithContext(ctx), nil
}

// cleartextHost returns the host of an http:// URL that is not a loopback
// address or "localhost".
func cleartextHost(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return "", false
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
		return "", false
	}
	return host, true
}

// scrubResult removes the Authorization value (and its bare credential, in
// every escaping secret.Scrubber knows) from the fields of r that come from
// the response, because some receivers echo the request in errors and those
// fields end up in dead letters and logs. It runs on the decoded fields, not
// only the body: a JSON description is unescaped by Classify, so a
// credential the body carried escaped ("\u002f") is only recognisable after
// decoding. A redirect's Location keeps its scheme, host and path, which is
// what an operator needs to fix the endpoint, but none of its query values.
func scrubResult(r *Result, authzHeader []string) {
	if r.Location != "" {
		r.Location = secret.URL(r.Location)
	}
	if len(authzHeader) == 0 || authzHeader[0] == "" {
		return
	}
	if r.Body == "" && r.Description == "" && r.Err == "" && r.Location == "" {
		return // a 2xx: nothing from the receiver to scrub, so no scrubber to build
	}
	s := secret.NewScrubber(authzHeader[0])
	r.Body = s.String(r.Body)
	for _, f := range []*string{&r.Description, &r.Err, &r.Location} {
		*f = s.String(*f)
	}
}
