package push

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Outcome is what the caller should do with a SET after a push.
type Outcome int

const (
	// Delivered means the receiver accepted the SET (any 2xx): acknowledge it.
	Delivered Outcome = iota
	// Retry means the failure is transient: try again later, no sooner than
	// Result.RetryAfter when it is set.
	Retry
	// Refresh means the receiver refused the access token. Classify returns
	// it; Push acts on it (one new token, one more attempt) and never returns
	// it, turning a second refusal into Retry.
	Refresh
	// Permanent means sending the same SET again cannot succeed: dead-letter
	// it with the Result's reason, status, err, description and body.
	Permanent
	// Blocked means the relay's configuration for this receiver is wrong
	// (credentials the token endpoint rejects, an endpoint URL that does
	// not exist or redirects, a certificate that does not match its name
	// or trust): no SET can get through until an operator fixes it, and
	// the SET itself is fine. The caller keeps it, without counting an
	// attempt, and stops sending to the receiver until a probe succeeds.
	Blocked
)

// String names the outcome for logs and metric labels.
func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Refresh:
		return "refresh"
	case Permanent:
		return "permanent"
	case Blocked:
		return "blocked"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Stable reason codes carried in Result.Reason. Operators alert and filter on
// them, so they never change meaning.
const (
	ReasonDelivered            = "delivered"
	ReasonHTTP5xx              = "http_5xx"
	ReasonHTTP429              = "http_429"
	ReasonHTTP408              = "http_408"
	ReasonTimeout              = "timeout"
	ReasonCanceled             = "canceled"
	ReasonConnection           = "connection"
	ReasonTLS                  = "tls"
	ReasonToken                = "token"
	ReasonTokenConfig          = "token_config"
	ReasonAccessDenied         = "access_denied"
	ReasonAuthenticationFailed = "authentication_failed"
	ReasonInvalidRequest       = "invalid_request"
	ReasonInvalidKey           = "invalid_key"
	ReasonInvalidIssuer        = "invalid_issuer"
	ReasonInvalidAudience      = "invalid_audience"
	ReasonHTTP4xx              = "http_4xx"
	ReasonRedirect             = "redirect"
	ReasonBadResponse          = "bad_response"
	// ReasonEndpointNotFound is a push endpoint answering 404, 405 or 410,
	// or 415 or 406 to RFC 8935's fixed Content-Type and Accept: the
	// configured endpoint URL is not an RFC 8935 push endpoint (any more).
	// The receiver is blocked, not the SET dead-lettered.
	ReasonEndpointNotFound = "endpoint_not_found"
	// ReasonForbidden is a push endpoint answering 403 without an RFC
	// 8935 credential code (authentication_failed, access_denied): the
	// receiver refuses this relay (its address is not on an allow-list,
	// its credentials are "insufficient to grant access" in RFC 9110
	// section 15.5.4's words, its token lacks a scope). Permanent for the
	// SET; the worker blocks the receiver when several different intents
	// in a row get it, as for invalid_key.
	ReasonForbidden = "forbidden"
	// ReasonInsufficientScope is a push endpoint challenging the access
	// token with RFC 6750's error="insufficient_scope" (section 3.1: "The
	// request requires higher privileges than provided by the access
	// token"). The token's scopes are the relay's configuration, so no
	// SET can get through: the receiver is blocked at once, not judged by
	// a streak like a bare 403, and the token is not refreshed.
	ReasonInsufficientScope = "insufficient_scope"
	// ReasonNonPublicAddress is a PublicOnly client refusing to connect
	// to an internal address. The receiver is blocked: the endpoint
	// resolves there for every SET.
	ReasonNonPublicAddress = "non_public_address"
)

// RFC 8935 section 2.3 error codes, as the receiver sends them in "err".
const (
	ErrCodeInvalidRequest       = "invalid_request"
	ErrCodeInvalidKey           = "invalid_key"
	ErrCodeInvalidIssuer        = "invalid_issuer"
	ErrCodeInvalidAudience      = "invalid_audience"
	ErrCodeAuthenticationFailed = "authentication_failed"
	ErrCodeAccessDenied         = "access_denied"
)

// Bounds on what a Result carries from the receiver, so a hostile or broken
// receiver cannot flood dead letters and logs.
const (
	// MaxBodyRead is the most Push reads of any response body.
	MaxBodyRead = 64 << 10
	// MaxResponseHeaderBytes is the most Push (and the token client)
	// reads of a response's headers; more ends the attempt as a
	// retryable connection failure.
	MaxResponseHeaderBytes = 256 << 10
	// MaxBodyExcerpt bounds Result.Body in bytes, before escaping overhead
	// for the truncation marker.
	MaxBodyExcerpt = 2 << 10
	maxDescription = 512
	maxErrCode     = 64
	maxLocation    = 512
)

// DefaultMaxRetryAfter caps a receiver's Retry-After when the caller gives no
// cap: an hour is long enough to respect a real maintenance window and short
// enough that a typo of "360000" does not park a SET for days.
const DefaultMaxRetryAfter = time.Hour

// Result is everything a push found out. It is a plain value so that the
// worker's decision function and the dead-letter record can be built from it
// without touching HTTP.
type Result struct {
	Outcome Outcome
	// Reason is one of the Reason* codes.
	Reason string
	// Receiver is the receiver's configured name; Push sets it.
	Receiver string
	// Status is the HTTP status of the last attempt, 0 when none came back.
	Status int
	// Err and Description are RFC 8935's "err" and "description" members of
	// an error response, bounded and with control characters escaped.
	Err         string
	Description string
	// Body is a bounded, valid UTF-8 excerpt of a non-2xx response body, with
	// control characters escaped. It is empty for 2xx, whose body is never
	// looked at.
	Body string
	// Location is the Location header of a 3xx, which Push never follows.
	Location string
	// RetryAfter is the receiver's Retry-After, capped; 0 when absent.
	RetryAfter time.Duration
	// Attempts counts the HTTP requests Push made to the receiver (0 when
	// the token could not be had, 2 after a refresh-then-retry).
	Attempts int
	// Cause is the transport or token error, if any. It never holds a
	// secret or a token-endpoint body.
	Cause error
}

// Error returns nil when the SET was delivered and a *DeliveryError
// otherwise, so that callers can use ordinary error handling and
// cenkalti/backoff's Permanent semantics.
func (r Result) Error() error {
	if r.Outcome == Delivered {
		return nil
	}
	return &DeliveryError{Result: r}
}

// Classify decides the outcome of one push attempt from the response status,
// headers and (bounded) body, or from the transport error when no response
// came back. It is a pure function: now is only used to turn an HTTP-date
// Retry-After into a delay, and maxRetryAfter caps that delay
// (DefaultMaxRetryAfter when <= 0).
//
// The rules, from RFC 8935 and docs/ARCHITECTURE.md:
//   - any 2xx is Delivered and the body is never parsed;
//   - 5xx, 429, 408, timeouts and connection errors are Retry, honouring
//     Retry-After;
//   - 403 (or 401 or 400) challenging the token with RFC 6750's
//     WWW-Authenticate error="insufficient_scope" is Blocked
//     (insufficient_scope): the configured scopes are wrong for every SET;
//   - 401, and 400 or 403 with err "authentication_failed", are Refresh;
//   - 400 or 403 with err "access_denied" is Retry (Push drops the token so
//     the next attempt uses a fresh one);
//   - 400 with invalid_request, invalid_key, invalid_issuer or
//     invalid_audience is Permanent with that reason (the worker blocks the
//     receiver when the last three come back for several intents in a row);
//   - 404, 405, 410, 406 and 415 are Blocked (endpoint_not_found), and any
//     3xx is Blocked (redirect): the endpoint URL is wrong, for every SET;
//   - 403 without one of the two credential codes is Permanent with reason
//     forbidden (the worker blocks the receiver when several intents in a
//     row get it);
//   - any other 4xx (including a 400 with an unknown, missing or unparseable
//     err), any 1xx and a status outside 100-599 are Permanent;
//   - a TLS failure of name or trust (unknown authority, hostname mismatch)
//     is Blocked (tls); an expired or otherwise invalid certificate is
//     Retry (tls), since only the receiver can fix it;
//   - a *TokenError is Retry, or Blocked with reason token_config when the
//     token endpoint rejected the client configuration.
func Classify(status int, h http.Header, body []byte, transportErr error, now time.Time, maxRetryAfter time.Duration) Result {
	if maxRetryAfter <= 0 {
		maxRetryAfter = DefaultMaxRetryAfter
	}
	if transportErr != nil {
		return classifyTransport(transportErr)
	}
	r := Result{Status: status}
	switch {
	case status >= 200 && status <= 299:
		r.Outcome, r.Reason = Delivered, ReasonDelivered
		return r
	case status < 100 || status > 599:
		r.Outcome, r.Reason = Permanent, ReasonBadResponse
		r.Body = Excerpt(body, MaxBodyExcerpt)
		return r
	case status <= 199:
		// A final 1xx is a protocol violation: the receiver never said
		// whether it took the SET, and resending will not change that.
		r.Outcome, r.Reason = Permanent, ReasonBadResponse
		return r
	case status <= 399:
		r.Outcome, r.Reason = Blocked, ReasonRedirect
		r.Location = Excerpt([]byte(h.Get("Location")), maxLocation)
		r.Body = Excerpt(body, MaxBodyExcerpt)
		return r
	}

	// 4xx and 5xx: record what the receiver said, whatever we decide.
	r.Body = Excerpt(body, MaxBodyExcerpt)
	code, desc, parsed := parseErrorBody(body)
	if parsed {
		r.Err = Excerpt([]byte(code), maxErrCode)
		r.Description = Excerpt([]byte(desc), maxDescription)
	}

	if status == http.StatusForbidden || status == http.StatusUnauthorized || status == http.StatusBadRequest {
		if desc, ok := insufficientScope(h); ok {
			r.Outcome, r.Reason = Blocked, ReasonInsufficientScope
			if r.Err == "" {
				r.Err = ReasonInsufficientScope
			}
			if r.Description == "" {
				r.Description = Excerpt([]byte(desc), maxDescription)
			}
			return r
		}
	}

	switch {
	case status >= 500:
		r.Outcome, r.Reason = Retry, ReasonHTTP5xx
		r.RetryAfter = RetryAfter(h, now, maxRetryAfter)
		return r
	case status == http.StatusTooManyRequests:
		r.Outcome, r.Reason = Retry, ReasonHTTP429
		r.RetryAfter = RetryAfter(h, now, maxRetryAfter)
		return r
	case status == http.StatusRequestTimeout:
		// RFC 9110 15.5.9: the server timed out waiting for the request and
		// the client may repeat it; nothing is wrong with the SET.
		r.Outcome, r.Reason = Retry, ReasonHTTP408
		r.RetryAfter = RetryAfter(h, now, maxRetryAfter)
		return r
	case status == http.StatusUnauthorized:
		r.Outcome, r.Reason = Refresh, ReasonAuthenticationFailed
		return r
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed || status == http.StatusGone,
		status == http.StatusUnsupportedMediaType || status == http.StatusNotAcceptable:
		// 415 and 406 refuse the Content-Type and Accept that RFC 8935
		// section 2.1 fixes for every SET: like a 404, the URL is not a
		// push endpoint, and every SET would be refused the same way.
		r.Outcome, r.Reason = Blocked, ReasonEndpointNotFound
		return r
	}

	// RFC 8935 sends its error codes with 400; some receivers use 403 for
	// the two credential codes, which mean the same thing there.
	if status == http.StatusBadRequest || status == http.StatusForbidden {
		switch code {
		case ErrCodeAuthenticationFailed:
			r.Outcome, r.Reason = Refresh, ReasonAuthenticationFailed
			return r
		case ErrCodeAccessDenied:
			r.Outcome, r.Reason = Retry, ReasonAccessDenied
			r.RetryAfter = RetryAfter(h, now, maxRetryAfter)
			return r
		}
	}
	if status == http.StatusBadRequest {
		switch code {
		case ErrCodeInvalidRequest, ErrCodeInvalidKey, ErrCodeInvalidIssuer, ErrCodeInvalidAudience:
			r.Outcome, r.Reason = Permanent, code
			return r
		}
	}
	if status == http.StatusForbidden {
		// RFC 9110 section 15.5.4: the receiver refuses this relay, and
		// "SHOULD NOT automatically repeat the request with the same
		// credentials". Usually the relay's address or credentials (an
		// allow-list, a token without the scope, RFC 6750 section 3.1),
		// so every SET gets it; sometimes a firewall refusing one SET's
		// content. Its own reason lets the worker tell the two apart
		// by whether other intents get it too.
		r.Outcome, r.Reason = Permanent, ReasonForbidden
		return r
	}
	r.Outcome, r.Reason = Permanent, ReasonHTTP4xx
	return r
}

// classifyTransport handles the cases where no HTTP response came back.
func classifyTransport(err error) Result {
	r := Result{Outcome: Retry, Cause: err}
	var te *TokenError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &te):
		r.Reason = ReasonToken
		r.Status = te.Status
		r.RetryAfter = te.RetryAfter
		if te.Permanent {
			r.Outcome, r.Reason = Blocked, ReasonTokenConfig
		}
	case errors.Is(err, ErrNonPublicAddress):
		r.Outcome, r.Reason = Blocked, ReasonNonPublicAddress
	case errors.Is(err, context.Canceled):
		r.Reason = ReasonCanceled
	case errors.Is(err, context.DeadlineExceeded):
		r.Reason = ReasonTimeout
	case errors.As(err, &unknownCA), errors.As(err, &hostErr):
		// The certificate does not chain to what this relay trusts, or
		// names another host: the endpoint URL or tls.ca_file is wrong
		// for every SET, so the receiver is blocked until it is fixed.
		r.Outcome, r.Reason = Blocked, ReasonTLS
	case errors.As(err, &certErr), errors.As(err, &invalidCert):
		// An expired or otherwise invalid certificate is the receiver's
		// to renew; retrying keeps the SET meanwhile.
		r.Reason = ReasonTLS
	case errors.As(err, &netErr) && netErr.Timeout():
		r.Reason = ReasonTimeout
	default:
		r.Reason = ReasonConnection
	}
	return r
}

// parseErrorBody extracts RFC 8935's err and description. parsed is false
// for anything that is not a JSON object with a string err; a description
// of the wrong type is ignored rather than discarding the err.
func parseErrorBody(body []byte) (code, desc string, parsed bool) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		if len(body) >= MaxBodyRead {
			return parseCutErrorBody(body)
		}
		return "", "", false
	}
	raw, ok := m["err"]
	if !ok {
		return "", "", false
	}
	if err := json.Unmarshal(raw, &code); err != nil {
		return "", "", false
	}
	if d, ok := m["description"]; ok {
		if err := json.Unmarshal(d, &desc); err != nil {
			desc = ""
		}
	}
	return code, desc, true
}

// parseCutErrorBody reads err and description from an error body that Push
// cut at MaxBodyRead: a receiver that echoes a large SET (or a stack trace)
// in its description sends more than that, and the cut would otherwise
// turn its err, invalid_key say, into an anonymous http_4xx. The object's
// members are read in order up to the cut; err counts only if it was read
// whole, as a string, before it. A body this long that is malformed before
// the cut, or not an object, gives no code, as a short one does. (A cut
// body in which Push scrubbed an echoed credential is shorter than the cap
// by then, so it keeps the old verdict, http_4xx: rare enough to leave.)
func parseCutErrorBody(body []byte) (code, desc string, parsed bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", "", false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			break
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				return "", "", false // malformed before the cut
			}
			break // the cut
		}
		switch key {
		case "err":
			if err := json.Unmarshal(raw, &code); err != nil {
				return "", "", false
			}
			parsed = true
		case "description":
			if err := json.Unmarshal(raw, &desc); err != nil {
				desc = ""
			}
		}
	}
	if !parsed {
		return "", "", false
	}
	return code, desc, true
}

// RetryAfter reads a Retry-After header given in delay-seconds or as an
// HTTP-date (RFC 9110 10.2.3), relative to now, and caps it at limit. It
// returns 0 when the header is absent, malformed or in the past.
func RetryAfter(h http.Header, now time.Time, limit time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		if secs > uint64(limit/time.Second) {
			return limit
		}
		d = time.Duration(secs) * time.Second
	} else if errors.Is(err, strconv.ErrRange) {
		return limit
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	if d < 0 {
		return 0
	}
	if d > limit {
		return limit
	}
	return d
}

// Excerpt renders about limit bytes of b as valid UTF-8 with control
// characters escaped (\n, \t, \u00XX ...), so a receiver's body can be put in
// a log line or a dead letter without breaking either. A truncated excerpt
// ends with a marker giving the original length.
func Excerpt(b []byte, limit int) string {
	if len(b) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.Grow(min(len(b), limit) + 16)
	i := 0
	for i < len(b) && sb.Len() < limit {
		r, size := utf8.DecodeRune(b[i:])
		i += size
		switch {
		case r == utf8.RuneError && size <= 1:
			sb.WriteRune(utf8.RuneError)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029:
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	if i < len(b) {
		fmt.Fprintf(&sb, "…(%d bytes)", len(b))
	}
	return sb.String()
}
