package push

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// DeliveryError is the error form of a Result that was not delivered. It
// carries retryability as a type: Temporary reports whether sending the
// same SET again may succeed, and a permanent DeliveryError also matches
// errors.As(err, new(*backoff.PermanentError)), so backoff.Retry stops on it.
type DeliveryError struct {
	Result Result
}

// Error describes the failure with its reason, status, the receiver's err
// and description, and the redirect target. It never includes a token or
// secret: Result only carries bounded receiver output and redacted causes.
func (e *DeliveryError) Error() string {
	var b strings.Builder
	b.WriteString("push")
	if e.Result.Receiver != "" {
		b.WriteString(" to ")
		b.WriteString(strconv.Quote(e.Result.Receiver))
	}
	b.WriteString(": ")
	b.WriteString(e.Result.Outcome.String())
	b.WriteString(": ")
	b.WriteString(e.Result.Reason)
	if e.Result.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Result.Status)
	}
	if e.Result.Err != "" {
		fmt.Fprintf(&b, " err=%q", e.Result.Err)
	}
	if e.Result.Description != "" {
		fmt.Fprintf(&b, " description=%q", e.Result.Description)
	}
	if e.Result.Location != "" {
		fmt.Fprintf(&b, " location=%q", e.Result.Location)
	}
	if e.Result.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Result.Cause.Error())
	}
	return b.String()
}

// Unwrap exposes the transport or token error, so errors.Is(err,
// context.DeadlineExceeded) and errors.As(err, **TokenError) work.
func (e *DeliveryError) Unwrap() error { return e.Result.Cause }

// Temporary reports whether a later attempt may succeed.
func (e *DeliveryError) Temporary() bool { return e.Result.Outcome != Permanent }

// As lets a permanent DeliveryError be found as a *backoff.PermanentError,
// whose Err is the DeliveryError itself, without callers having to wrap it.
func (e *DeliveryError) As(target any) bool {
	p, ok := target.(**backoff.PermanentError)
	if !ok || e.Result.Outcome != Permanent {
		return false
	}
	*p = &backoff.PermanentError{Err: e}
	return true
}

// TokenError reports a failure to get an access token from the receiver's
// token endpoint. It deliberately carries only the HTTP status, the RFC 6749
// error code and a bounded, secret-scrubbed description: the oauth2 library's
// own errors embed the token endpoint's response body, which may echo
// credentials, so they are never wrapped.
type TokenError struct {
	// Status is the token endpoint's HTTP status, 0 if none came back.
	Status int
	// Code is RFC 6749's "error" (invalid_client, ...), bounded.
	Code string
	// Description is RFC 6749's "error_description", bounded, with any
	// occurrence of the client secret removed.
	Description string
	// Permanent is true when the endpoint rejected the client configuration
	// (invalid_client, unauthorized_client, ...): retrying cannot help until
	// an operator fixes the credentials.
	Permanent bool
	// RetryAfter is the endpoint's Retry-After on a retryable failure
	// (a 429 or 503), capped at Config.MaxRetryAfter; 0 when it gave none.
	// The token endpoint is not asked again before it has passed.
	RetryAfter time.Duration
	// cause is a transport error (never an oauth2 error carrying a body).
	cause error
	// problem says what went wrong when there is no status or cause.
	problem string
}

// Error describes the failure without any secret or response body.
func (e *TokenError) Error() string {
	var b strings.Builder
	b.WriteString("token endpoint")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %q", e.Description)
	}
	if e.problem != "" {
		b.WriteString(": ")
		b.WriteString(e.problem)
	}
	if e.cause != nil {
		b.WriteString(": ")
		b.WriteString(e.cause.Error())
	}
	return b.String()
}

// Unwrap exposes the transport error, if any.
func (e *TokenError) Unwrap() error { return e.cause }

// Temporary reports whether fetching the token again may succeed.
func (e *TokenError) Temporary() bool { return !e.Permanent }
