package push

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/setrelay/setrelay/secret"
)

// credentials produce the Authorization header for one attempt.
type credentials interface {
	// authorization returns the header value as a one-element slice, shared
	// and read-only, ready to go in an http.Header without an allocation,
	// and a handle identifying the token, to pass to refused.
	authorization(ctx context.Context) (value []string, handle any, err error)
	// refused drops the token identified by handle and reports whether a
	// new one may differ (false for a static header).
	refused(handle any) bool
}

// staticAuth sends a fixed Authorization header. It is only ever used
// through a pointer, so printing a Client shows an address, not the value.
type staticAuth struct{ value []string }

func (s *staticAuth) authorization(context.Context) ([]string, any, error) {
	return s.value, nil, nil
}

func (*staticAuth) refused(any) bool { return false }

// tokenConfigCodes are RFC 6749 5.2 errors that mean the client
// configuration is wrong: asking again with the same credentials cannot help.
// In the client-credentials grant every parameter comes from the relay's
// configuration, so all six codes are about it; invalid_grant is also what
// an endpoint that expects the parameters elsewhere (the query string, say)
// answers.
var tokenConfigCodes = map[string]bool{
	"invalid_request":        true,
	"invalid_client":         true,
	"invalid_grant":          true,
	"unauthorized_client":    true,
	"invalid_scope":          true,
	"unsupported_grant_type": true,
}

// tokenLaterCodes are the error codes that say "try again later" (RFC 6749
// 4.1.2.1 defines them for the authorization endpoint, and token endpoints
// reuse them): they stay retryable whatever status carries them.
var tokenLaterCodes = map[string]bool{
	"temporarily_unavailable": true,
	"server_error":            true,
}

// oauthAuth holds the receiver's one client-credentials token for the whole
// process. The caching, the expiry margin and the single-flight behaviour are
// oauth2's ReuseTokenSource: it holds a mutex while fetching, so concurrent
// callers wait for the one fetch and then share its token. When the receiver
// refuses the token, the whole generation (a ReuseTokenSource and what it
// last returned) is replaced by a fresh, empty one, which is the only way
// oauth2 offers to forget a cached token.
type oauthAuth struct {
	fetch         *fetcher
	refreshBefore time.Duration
	cur           atomic.Pointer[tokenGen]
}

// tokenGen is one generation of the token: a ReuseTokenSource and the last
// token it handed out, with its header value. last lets the hot path skip
// the source's mutex and the goroutine below while the token is valid; its
// validity is oauth2's own check (Token.Valid, with the expiry margin that
// ReuseTokenSourceWithExpiry set on the token).
type tokenGen struct {
	src  oauth2.TokenSource
	last atomic.Pointer[bearer]
}

// bearer is a token and its ready-made Authorization value.
type bearer struct {
	tok    *oauth2.Token
	header []string
}

func newOAuthAuth(f *fetcher, refreshBefore time.Duration) *oauthAuth {
	a := &oauthAuth{fetch: f, refreshBefore: refreshBefore}
	a.cur.Store(a.newGen())
	return a
}

func (a *oauthAuth) newGen() *tokenGen {
	return &tokenGen{src: oauth2.ReuseTokenSourceWithExpiry(nil, a.fetch, a.refreshBefore)}
}

// tokenResult carries a token source's answer across a goroutine.
type tokenResult struct {
	tok *oauth2.Token
	err error
}

// authorization returns "Bearer <token>". ReuseTokenSource.Token takes no
// context, so when it may have to fetch it runs in a goroutine and the
// caller waits on its own ctx as well: a cancelled push returns at once,
// while the fetch itself is bounded by the token client's timeout, so the
// goroutine always ends within Config.Timeout and its result is then cached
// for the next caller.
func (a *oauthAuth) authorization(ctx context.Context) ([]string, any, error) {
	g := a.cur.Load()
	if b := g.last.Load(); b != nil && b.tok.Valid() {
		return b.header, g, nil
	}
	done := make(chan tokenResult, 1)
	endSpan := a.fetch.traceFetch(ctx)
	go func() {
		tok, err := g.src.Token()
		done <- tokenResult{tok, err}
	}()
	select {
	case r := <-done:
		endSpan(r.err)
		if r.err != nil {
			return nil, g, r.err
		}
		// fetcher.Token only passes on bearer tokens (checkToken), so the
		// scheme is RFC 6750's spelling whatever case token_type had.
		b := &bearer{tok: r.tok, header: []string{"Bearer " + r.tok.AccessToken}}
		g.last.Store(b)
		return b.header, g, nil
	case <-ctx.Done():
		endSpan(ctx.Err())
		return nil, g, fmt.Errorf("waiting for the access token: %w", ctx.Err())
	}
}

// refused forgets the generation that produced a refused token, unless
// another worker has already replaced it: many workers seeing the same
// refusal cause exactly one new fetch.
func (a *oauthAuth) refused(handle any) bool {
	g, ok := handle.(*tokenGen)
	if !ok {
		return false
	}
	a.cur.CompareAndSwap(g, a.newGen())
	return true
}

// fetcher is the non-caching oauth2.TokenSource under the ReuseTokenSource:
// every call is one request to the token endpoint. It turns the oauth2
// library's errors, which embed the endpoint's response body, into
// *TokenError values that carry no body and no secret.
type fetcher struct {
	receiver string
	cc       *clientcredentials.Config
	hc       *http.Client // its Timeout bounds every fetch
	log      *zap.Logger
	m        *Metrics
	scrub    *secret.Scrubber // removes the client secret from descriptions
	// refreshBefore is the ReuseTokenSource's expiry margin; Token needs it
	// to keep short-lived tokens usable (see there).
	refreshBefore time.Duration
	// maxRetryAfter caps the token endpoint's Retry-After, as
	// Config.MaxRetryAfter caps the push endpoint's.
	maxRetryAfter time.Duration

	// The last failure is remembered for tokenFailureHold. ReuseTokenSource
	// caches only successes: callers queued on its mutex behind a failed
	// fetch would each fetch again, one after another, hammering a broken
	// endpoint. With the failure remembered, they all get it at once. A
	// Retry-After from the endpoint holds the failure for that long
	// instead: asking sooner is what it just asked the relay not to do.
	mu        sync.Mutex
	lastErr   *TokenError
	holdUntil time.Time
	// parent is the trace context for the next fetch (see traceFetch).
	parent atomic.Pointer[trace.SpanContext]
}

// tokenFailureHold is how long a failed token fetch answers for all callers
// before the endpoint is asked again. It is short next to any retry backoff,
// so it only collapses a burst of concurrent callers into one request.
const tokenFailureHold = 2 * time.Second

func newFetcher(receiver string, a AuthConfig, hc *http.Client, maxRetryAfter time.Duration, log *zap.Logger, m *Metrics) *fetcher {
	clientSecret := a.ClientSecret.Reveal()
	return &fetcher{
		receiver:      receiver,
		refreshBefore: a.RefreshBefore,
		maxRetryAfter: maxRetryAfter,
		cc: &clientcredentials.Config{
			ClientID:     a.ClientID,
			ClientSecret: clientSecret,
			TokenURL:     a.TokenURL,
			Scopes:       a.Scopes,
			AuthStyle:    oauthStyle(a.AuthStyle),
		},
		hc:  hc,
		log: log,
		m:   m,
		// The secret as such, and the Basic header oauth2 builds from it
		// (RFC 6749 2.3.1 form-encodes id and secret first).
		scrub: secret.NewScrubber(clientSecret,
			"Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(a.ClientID)+":"+url.QueryEscape(clientSecret)))),
	}
}

// Token fetches a new token. The context is built here, not stored: it only
// carries the HTTP client, whose Timeout bounds the request.
func (f *fetcher) Token() (*oauth2.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lastErr != nil {
		if left := time.Until(f.holdUntil); left > 0 {
			if f.lastErr.RetryAfter == 0 {
				return nil, f.lastErr
			}
			// The callers' redeliveries wait for what is left of the
			// endpoint's Retry-After, not all of it again.
			held := *f.lastErr
			held.RetryAfter = left
			return nil, &held
		}
	}
	ctx := f.traced(context.WithValue(context.Background(), oauth2.HTTPClient, f.hc))
	tok, err := f.cc.Token(ctx)
	if err != nil {
		return nil, f.failed(f.tokenError(err))
	}
	if te := checkToken(tok); te != nil {
		return nil, f.failed(te)
	}
	f.lastErr = nil
	if !tok.Expiry.IsZero() && !tok.Expiry.After(time.Now()) {
		// A negative expires_in (oauth2 turns it into an expiry in the
		// past) would make the token count as expired on arrival, so
		// every push would fetch another. It says nothing usable about
		// the lifetime, so it is treated as absent, as oauth2 treats 0:
		// the token is kept until the receiver refuses it.
		f.log.Warn("token endpoint gave a negative expires_in; using the token until the receiver refuses it")
		tok.Expiry = time.Time{}
	}
	expiry := tok.Expiry // as the endpoint said, before the margin below moves it
	// A token that lives less than four refresh margins would be replaced
	// early for most of its life, and one shorter than the margin would
	// count as expired on arrival, so every push would fetch a new token:
	// the first mistake in the digest's list of real transmitters'. The
	// margin is therefore at most a quarter of the token's lifetime; the
	// expiry is moved so that ReuseTokenSource's fixed margin lands there.
	if life := time.Until(tok.Expiry); !tok.Expiry.IsZero() && life/4 < f.refreshBefore {
		tok.Expiry = tok.Expiry.Add(f.refreshBefore - max(life, 0)/4)
	}
	f.m.tokenFetch(f.receiver, "ok")
	f.m.tokenExpires(f.receiver, expiry)
	// f.log already names the receiver (New adds it).
	f.log.Info("fetched access token", zap.Time("expiry", tok.Expiry))
	return tok, nil
}

// failed remembers a failed fetch for the callers behind it and counts it.
func (f *fetcher) failed(te *TokenError) *TokenError {
	f.lastErr, f.holdUntil = te, time.Now().Add(max(tokenFailureHold, te.RetryAfter))
	if te.Permanent {
		f.m.tokenFetch(f.receiver, "config_error")
	} else {
		f.m.tokenFetch(f.receiver, "error")
	}
	return te
}

// checkToken refuses a token response that setrelay cannot use. RFC 6749
// 7.1: "The client MUST NOT use an access token if it does not understand
// the token type"; this client understands Bearer (RFC 6750), whose name is
// case-insensitive (RFC 6749 5.1). A response without token_type is taken
// as Bearer, as oauth2 does: token_type is REQUIRED, but such endpoints
// exist and their tokens are bearer tokens. The token itself must fit RFC
// 6750 2.1's "Bearer" 1*SP b64token: white space or a control character
// would make the header ambiguous, or one net/http refuses to send, for
// every SET. Both come from the endpoint as configured, so both block.
func checkToken(tok *oauth2.Token) *TokenError {
	if tok.TokenType != "" && !strings.EqualFold(tok.TokenType, "bearer") {
		return &TokenError{
			Permanent: true,
			problem: fmt.Sprintf("token_type %q is not Bearer, the only type this relay can send (RFC 6750); ask the receiver for a client that is issued bearer tokens",
				Excerpt([]byte(tok.TokenType), maxErrCode)),
		}
	}
	for i := 0; i < len(tok.AccessToken); i++ {
		if c := tok.AccessToken[i]; c <= ' ' || c >= 0x7f {
			return &TokenError{
				Permanent: true,
				problem:   "access_token holds white space, a control or a non-ASCII character, so it cannot be sent as a Bearer credential (RFC 6750 2.1); check token_url",
			}
		}
	}
	return nil
}

// tokenError classifies and sanitises an error from the oauth2 library.
func (f *fetcher) tokenError(err error) *TokenError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		te := &TokenError{
			Code:        Excerpt([]byte(f.scrub.String(re.ErrorCode)), maxErrCode),
			Description: Excerpt([]byte(f.scrub.String(re.ErrorDescription)), maxDescription),
		}
		if re.Response != nil {
			te.Status = re.Response.StatusCode
		}
		switch {
		case tokenConfigCodes[re.ErrorCode]:
			te.Permanent = true
		case te.Code == "" && te.Status == http.StatusUnauthorized:
			// RFC 6749 5.2: a 401 is how a token endpoint using HTTP
			// authentication says invalid_client.
			te.Permanent = true
		case te.Status >= 300 && te.Status < 400:
			// A redirect means token_url is wrong; the client does not follow it.
			te.Permanent = true
			te.problem = "redirect not followed; check token_url"
		case te.Code == "" && te.Status >= 200 && te.Status < 300:
			// Not an OAuth answer: token_url points at something else.
			te.Permanent = true
			te.problem = "response is not a token response; check token_url"
		case tokenLaterCodes[re.ErrorCode]:
			// Retryable, whatever the status.
		case te.Status >= 400 && te.Status < 500 &&
			te.Status != http.StatusRequestTimeout && te.Status != http.StatusTooManyRequests:
			// RFC 6749 5.2: a refused token request is a 400 "(unless
			// specified otherwise)", with an extensible error code
			// (RFC 8707's invalid_target, a vendor's own). In this
			// grant every parameter is configuration, so the same
			// request gets the same answer: block. A 4xx without an
			// OAuth error (404, an HTML 403 ...) is not a token
			// endpoint answering at all: token_url is wrong.
			te.Permanent = true
			if te.Code == "" {
				te.problem = "not an OAuth token endpoint answer; check token_url"
			}
		}
		if !te.Permanent && re.Response != nil {
			// RFC 6585 4 (429) and RFC 9110 10.2.3 (503): how long to
			// wait before asking again.
			te.RetryAfter = RetryAfter(re.Response.Header, time.Now(), f.maxRetryAfter)
		}
		return te
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// A transport failure: the url.Error names the token URL, which
		// may carry query parameters a receiver insists on; only its
		// redacted form is kept.
		te := &TokenError{cause: secret.URLError(ue)}
		var unknownCA x509.UnknownAuthorityError
		var hostErr x509.HostnameError
		if errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
			// A certificate that does not chain to what this relay
			// trusts, or names another host, fails every handshake
			// until token_url or tls.ca_file is fixed: blocked, as for
			// the push endpoint (classifyTransport). An expired one
			// stays retryable: only the endpoint's operator can fix it.
			te.Permanent = true
			te.problem = "TLS certificate untrusted or for another name; check token_url and tls.ca_file"
		}
		return te
	}
	// The oauth2 library's other errors are about the response's shape
	// ("cannot parse json: ...", "server response missing access_token"). Their
	// text is not carried over, so no fragment of a body can leak through.
	// A 2xx that is not a token response is not an OAuth endpoint: token_url
	// is wrong, and asking again will not change that.
	if strings.Contains(err.Error(), "missing access_token") {
		return &TokenError{problem: "response has no access_token; check token_url", Permanent: true}
	}
	return &TokenError{problem: "response is not a valid token response; check token_url", Permanent: true}
}
