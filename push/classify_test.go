package push

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var classifyNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// expectStatus is the outcome and reason of a status with an empty body and
// no headers, stated independently of Classify's switch so the loop below
// checks every status against the documented table.
func expectStatus(status int) (Outcome, string) {
	switch {
	case status >= 200 && status < 300:
		return Delivered, ReasonDelivered
	case status < 200:
		return Permanent, ReasonBadResponse
	case status < 400:
		return Blocked, ReasonRedirect
	case status == 404, status == 405, status == 410, status == 406, status == 415:
		return Blocked, ReasonEndpointNotFound
	case status == 403:
		return Permanent, ReasonForbidden
	case status == 401:
		return Refresh, ReasonAuthenticationFailed
	case status == 408:
		return Retry, ReasonHTTP408
	case status == 429:
		return Retry, ReasonHTTP429
	case status < 500:
		return Permanent, ReasonHTTP4xx
	default:
		return Retry, ReasonHTTP5xx
	}
}

func TestClassifyEveryStatus(t *testing.T) {
	for status := 100; status <= 599; status++ {
		for _, body := range [][]byte{nil, []byte(`{"accepted":true}`), []byte("<html>oops</html>")} {
			r := Classify(status, http.Header{}, body, nil, classifyNow, 0)
			wantO, wantR := expectStatus(status)
			if r.Outcome != wantO || r.Reason != wantR || r.Status != status {
				t.Errorf("status %d body %q: got %v/%s/%d, want %v/%s", status, body, r.Outcome, r.Reason, r.Status, wantO, wantR)
			}
			if r.Outcome == Delivered && (r.Body != "" || r.Err != "" || r.Description != "") {
				t.Errorf("status %d: a 2xx body must not be parsed or kept, got %+v", status, r)
			}
			if status >= 400 && len(body) > 0 && r.Body == "" {
				t.Errorf("status %d: error body excerpt missing", status)
			}
			if (r.Outcome == Delivered) != (r.Error() == nil) {
				t.Errorf("status %d: Error() = %v for outcome %v", status, r.Error(), r.Outcome)
			}
		}
	}
	for _, status := range []int{0, 99, 600, 999, -1} {
		r := Classify(status, nil, nil, nil, classifyNow, 0)
		if r.Outcome != Permanent || r.Reason != ReasonBadResponse {
			t.Errorf("status %d: got %v/%s, want permanent/bad_response", status, r.Outcome, r.Reason)
		}
	}
}

func TestClassifyRFC8935Codes(t *testing.T) {
	tests := []struct {
		status  int
		body    string
		outcome Outcome
		reason  string
		err     string
		desc    string
	}{
		{400, `{"err":"invalid_request","description":"missing events"}`, Permanent, ReasonInvalidRequest, "invalid_request", "missing events"},
		{400, `{"err":"invalid_key","description":"kid unknown"}`, Permanent, ReasonInvalidKey, "invalid_key", "kid unknown"},
		{400, `{"err":"invalid_issuer","description":"iss"}`, Permanent, ReasonInvalidIssuer, "invalid_issuer", "iss"},
		{400, `{"err":"invalid_audience","description":"aud"}`, Permanent, ReasonInvalidAudience, "invalid_audience", "aud"},
		{400, `{"err":"authentication_failed","description":"bad token"}`, Refresh, ReasonAuthenticationFailed, "authentication_failed", "bad token"},
		{400, `{"err":"access_denied","description":"not now"}`, Retry, ReasonAccessDenied, "access_denied", "not now"},
		{403, `{"err":"access_denied"}`, Retry, ReasonAccessDenied, "access_denied", ""},
		{403, `{"err":"authentication_failed"}`, Refresh, ReasonAuthenticationFailed, "authentication_failed", ""},
		// A 403 without a credential code is the receiver refusing this
		// relay (RFC 9110 15.5.4: credentials "insufficient to grant
		// access"; an IP allow-list; RFC 6750 insufficient_scope): its own
		// reason, which the worker judges receiver-wide by its streak.
		{403, `{"err":"invalid_key"}`, Permanent, ReasonForbidden, "invalid_key", ""},
		{403, ``, Permanent, ReasonForbidden, "", ""},
		{403, `{"message":"Forbidden"}`, Permanent, ReasonForbidden, "", ""},
		{403, `<html><body>403 Forbidden: your address is not allowed</body></html>`, Permanent, ReasonForbidden, "", ""},
		// 415 and 406 answer the media types RFC 8935 section 2.1 fixes
		// for every SET: the endpoint is not a push endpoint.
		{415, `{"err":"invalid_request","description":"unsupported media type"}`, Blocked, ReasonEndpointNotFound, "invalid_request", "unsupported media type"},
		{406, ``, Blocked, ReasonEndpointNotFound, "", ""},
		{401, `{"err":"invalid_key"}`, Refresh, ReasonAuthenticationFailed, "invalid_key", ""},
		{400, `{"err":"something_new","description":"x"}`, Permanent, ReasonHTTP4xx, "something_new", "x"},
		{400, `{"err":"INVALID_KEY"}`, Permanent, ReasonHTTP4xx, "INVALID_KEY", ""},
		{400, `{"err":""}`, Permanent, ReasonHTTP4xx, "", ""},
		{404, `{"err":"invalid_request"}`, Blocked, ReasonEndpointNotFound, "invalid_request", ""},
		{500, `{"err":"invalid_request"}`, Retry, ReasonHTTP5xx, "invalid_request", ""},
		{429, `{"err":"access_denied"}`, Retry, ReasonHTTP429, "access_denied", ""},
		// Malformed bodies: never a panic, never a guessed code.
		{400, ``, Permanent, ReasonHTTP4xx, "", ""},
		{400, `not json`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `["invalid_key"]`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":7,"description":"x"}`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":["invalid_key"]}`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":null}`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":"invalid_key","description":42}`, Permanent, ReasonInvalidKey, "invalid_key", ""},
		{400, `{"description":"no err"}`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":"invalid_key"`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `"invalid_key"`, Permanent, ReasonHTTP4xx, "", ""},
		{400, `{"err":"invalid_key\nX","description":"line1\nline2\u0000"}`, Permanent, ReasonHTTP4xx, `invalid_key\nX`, `line1\nline2\u0000`},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %s", tt.status, tt.body), func(t *testing.T) {
			r := Classify(tt.status, http.Header{}, []byte(tt.body), nil, classifyNow, 0)
			if r.Outcome != tt.outcome || r.Reason != tt.reason {
				t.Fatalf("got %v/%s, want %v/%s", r.Outcome, r.Reason, tt.outcome, tt.reason)
			}
			if r.Err != tt.err || r.Description != tt.desc {
				t.Fatalf("err/description = %q/%q, want %q/%q", r.Err, r.Description, tt.err, tt.desc)
			}
			if tt.body != "" && r.Body == "" {
				t.Fatal("body excerpt missing")
			}
		})
	}
}

func TestClassifyHugeBody(t *testing.T) {
	desc := strings.Repeat("d", 10_000)
	body := []byte(`{"err":"invalid_request","description":"` + desc + `","pad":"` + strings.Repeat("x", 1<<20) + `"}`)
	r := Classify(400, nil, body, nil, classifyNow, 0)
	if r.Reason != ReasonInvalidRequest {
		t.Fatalf("reason %s", r.Reason)
	}
	if len(r.Body) > MaxBodyExcerpt+64 || !strings.Contains(r.Body, fmt.Sprintf("(%d bytes)", len(body))) {
		t.Fatalf("body excerpt not bounded/marked: len %d", len(r.Body))
	}
	if len(r.Description) > maxDescription+64 {
		t.Fatalf("description not bounded: %d", len(r.Description))
	}
}

func TestClassifyRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		status int
		value  string
		max    time.Duration
		want   time.Duration
	}{
		{"seconds", 503, "120", 0, 2 * time.Minute},
		{"zero", 429, "0", 0, 0},
		{"padded", 429, " 7 ", 0, 7 * time.Second},
		{"capped default 1h", 503, "86400", 0, time.Hour},
		{"capped custom", 429, "600", time.Minute, time.Minute},
		{"overflow", 429, "99999999999999999999999", 0, time.Hour},
		{"http-date", 503, classifyNow.Add(90 * time.Second).Format(http.TimeFormat), 0, 90 * time.Second},
		{"http-date past", 503, classifyNow.Add(-time.Hour).Format(http.TimeFormat), 0, 0},
		{"http-date far", 503, classifyNow.Add(48 * time.Hour).Format(http.TimeFormat), 0, time.Hour},
		{"negative", 503, "-5", 0, 0},
		{"garbage", 503, "soon", 0, 0},
		{"fraction", 503, "1.5", 0, 0},
		{"on 500", 500, "3", 0, 3 * time.Second},
		{"on 408", 408, "4", 0, 4 * time.Second},
		{"ignored on 400", 400, "3", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{"Retry-After": {tt.value}}
			r := Classify(tt.status, h, nil, nil, classifyNow, tt.max)
			if r.RetryAfter != tt.want {
				t.Fatalf("RetryAfter = %v, want %v", r.RetryAfter, tt.want)
			}
		})
	}
}

func TestClassifyRedirectNamesLocation(t *testing.T) {
	h := http.Header{"Location": {"https://elsewhere.example/events"}}
	r := Classify(308, h, nil, nil, classifyNow, 0)
	if r.Outcome != Blocked || r.Reason != ReasonRedirect || r.Location != "https://elsewhere.example/events" {
		t.Fatalf("got %+v", r)
	}
	if err := r.Error(); err == nil || !strings.Contains(err.Error(), "https://elsewhere.example/events") {
		t.Fatalf("error %v does not name the Location", err)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassifyTransportErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		outcome Outcome
		reason  string
	}{
		{"deadline", fmt.Errorf("post: %w", context.DeadlineExceeded), Retry, ReasonTimeout},
		{"canceled", fmt.Errorf("post: %w", context.Canceled), Retry, ReasonCanceled},
		{"net timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, Retry, ReasonTimeout},
		{"refused", &net.OpError{Op: "dial", Err: errors.New("connection refused")}, Retry, ReasonConnection},
		{"token retryable", &TokenError{Status: 503}, Retry, ReasonToken},
		{"token config", &TokenError{Status: 400, Code: "invalid_client", Permanent: true}, Blocked, ReasonTokenConfig},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, Blocked, ReasonTLS},
		{"wrong name", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "x.example"}}, Blocked, ReasonTLS},
		{"expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, Retry, ReasonTLS},
		{"other", errors.New("boom"), Retry, ReasonConnection},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A transport error wins over any status passed alongside it.
			r := Classify(200, nil, nil, tt.err, classifyNow, 0)
			if r.Outcome != tt.outcome || r.Reason != tt.reason {
				t.Fatalf("got %v/%s, want %v/%s", r.Outcome, r.Reason, tt.outcome, tt.reason)
			}
			if !errors.Is(r.Error(), tt.err) {
				t.Fatalf("Error() does not wrap the cause")
			}
		})
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"a\nb\r\tc", `a\nb\r\tc`},
		{"nul\x00bel\x07del\x7f", `nul\u0000bel\u0007del\u007f`},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"c1\u0085 ls\u2028", `c1\u0085 ls\u2028`},
		{"héllo", "héllo"},
	}
	for _, tt := range tests {
		if got := Excerpt([]byte(tt.in), 100); got != tt.want {
			t.Errorf("Excerpt(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long := strings.Repeat("é", 1000)
	got := Excerpt([]byte(long), 101)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…(2000 bytes)") || len(got) > 101+2+len("…(2000 bytes)") {
		t.Fatalf("truncated excerpt %q", got)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(400, []byte(`{"err":"invalid_key","description":"x"}`), "120", "")
	f.Add(202, []byte(``), "", "")
	f.Add(503, []byte(`<html>`), "Fri, 27 Nov 2026 12:00:00 GMT", "")
	f.Add(302, []byte(nil), "", "https://x.example/")
	f.Add(400, []byte("[\"\xff\x00\"]"), "-1", "")
	f.Add(429, []byte(`{"err":1}`), "99999999999999999999", "")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter, location string) {
		h := http.Header{"Retry-After": {retryAfter}, "Location": {location}}
		r := Classify(status, h, body, nil, classifyNow, time.Hour)
		if r.Outcome == Delivered != (status >= 200 && status <= 299) {
			t.Fatalf("status %d classified %v", status, r.Outcome)
		}
		if r.RetryAfter < 0 || r.RetryAfter > time.Hour {
			t.Fatalf("RetryAfter %v out of bounds", r.RetryAfter)
		}
		for name, s := range map[string]string{"body": r.Body, "err": r.Err, "description": r.Description, "location": r.Location} {
			if !utf8.ValidString(s) {
				t.Fatalf("%s not valid UTF-8: %q", name, s)
			}
			if strings.ContainsAny(s, "\x00\n\r\x1b") {
				t.Fatalf("%s carries raw control characters: %q", name, s)
			}
		}
		if len(r.Body) > MaxBodyExcerpt+64 {
			t.Fatalf("body excerpt %d bytes", len(r.Body))
		}
		if r.Reason == "" {
			t.Fatal("empty reason")
		}
		if (r.Outcome == Permanent || r.Outcome == Blocked) && r.Error() == nil {
			t.Fatal("permanent result without error")
		}
	})
}

// TestHugeErrorBodyKeepsItsCode: a receiver that echoes a large SET in its
// RFC 8935 description sends more than MaxBodyRead. Push reads only the
// cap, so the JSON it hands Classify is cut; the err member, which comes
// first, must still decide the outcome (here invalid_key, which the worker
// judges receiver-wide), not the cut turn it into an anonymous http_4xx.
func TestHugeErrorBodyKeepsItsCode(t *testing.T) {
	echo := strings.Repeat("eyJhbGciOiJFUzI1NiJ9", 100<<10/20) // ~100 KiB of SET
	rc := newReceiver(t, false, func(w http.ResponseWriter, _ *http.Request, _ []byte, _ int64) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = fmt.Fprintf(w, `{"err":"invalid_key","description":"kid k1 not registered; SET was %s"}`, echo)
	})
	c, _ := newTestClient(t, Config{Name: "r", Endpoint: rc.URL, InsecureHTTP: true})
	r := c.Push(context.Background(), []byte(testJWS))
	if r.Outcome != Permanent || r.Reason != ReasonInvalidKey || r.Err != "invalid_key" {
		t.Fatalf("result %v/%s err %q, want permanent/invalid_key", r.Outcome, r.Reason, r.Err)
	}
	if len(r.Body) > MaxBodyExcerpt+64 || !strings.HasPrefix(r.Body, `{"err":"invalid_key"`) {
		t.Fatalf("body excerpt %d bytes: %.80q", len(r.Body), r.Body)
	}
	// A short body that merely ends early is malformed, not cut by the
	// relay: no code is guessed from it.
	if r := Classify(400, nil, []byte(`{"err":"invalid_key"`), nil, classifyNow, 0); r.Reason != ReasonHTTP4xx || r.Err != "" {
		t.Fatalf("short malformed body: %v/%s err %q", r.Outcome, r.Reason, r.Err)
	}
	// Nor from a cut body whose err value is not a string, or which is
	// not an object at all.
	for _, b := range []string{`{"err":7,"description":"`, `["invalid_key","`} {
		body := []byte(b + strings.Repeat("x", MaxBodyRead))[:MaxBodyRead]
		if r := Classify(400, nil, body, nil, classifyNow, 0); r.Reason != ReasonHTTP4xx || r.Err != "" {
			t.Fatalf("cut body %.20q: %v/%s err %q", b, r.Outcome, r.Reason, r.Err)
		}
	}
}
