package secret

import (
	"net/url"
	"strings"
)

// URL returns raw with its user information, every query value and its
// fragment replaced by [Redacted], for echoing a configured or received URL
// in a log line, an error or a dead letter. Query keys, the scheme, host
// and path are kept: they are what an operator needs to recognise the URL.
// It works on the text, not on a parsed URL, so a URL that does not parse
// (the usual reason it is being echoed) is redacted as well.
func URL(raw string) string {
	rest, frag, hasFrag := strings.Cut(raw, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")

	var b strings.Builder
	b.Grow(len(raw) + 16)
	b.WriteString(redactUserinfo(rest))
	if hasQuery {
		b.WriteByte('?')
		for i, pair := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			key, _, hasValue := strings.Cut(pair, "=")
			switch {
			case hasValue:
				b.WriteString(key)
				b.WriteString("=" + Redacted)
			case pair != "":
				// A bare element ("?s3cr3t") may itself be the credential.
				b.WriteString(Redacted)
			}
		}
	}
	if hasFrag && frag != "" {
		// An implicit-flow redirect carries access_token in the fragment.
		b.WriteString("#" + Redacted)
	}
	return b.String()
}

// URLError returns a copy of ue whose URL is redacted by [URL]: net/http
// puts the request URL in every transport error, and that error travels into
// logs and dead letters. The cause is kept, so errors.Is and errors.As still
// see timeouts and TLS failures.
func URLError(ue *url.Error) *url.Error {
	return &url.Error{Op: ue.Op, URL: URL(ue.URL), Err: ue.Err}
}

// URLList redacts a comma-separated list of URLs, as NATS server lists are
// written (nats://user:pass@a:4222,nats://user:pass@b:4222).
func URLList(raw string) string {
	parts := strings.Split(raw, ",")
	for i, p := range parts {
		parts[i] = URL(p)
	}
	return strings.Join(parts, ",")
}

// redactUserinfo hides whatever sits between the scheme (or the start, for
// a bare "user:pass@host") and the last '@' of the authority.
func redactUserinfo(s string) string {
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexByte(s[start:], '/'); i >= 0 {
		end = start + i
	}
	at := strings.LastIndexByte(s[start:end], '@')
	if at < 0 {
		return s
	}
	return s[:start] + Redacted + s[start+at:]
}

// credentialParams are query parameters that carry a credential. A URL
// holding one leaks it to every log, proxy and error message that echoes
// the URL, so configuration refuses such URLs instead of redacting them
// everywhere after the fact.
var credentialParams = []string{"client_secret", "password", "token", "access_token"}

// CredentialInQuery reports the credential parameter (client_secret,
// password, token, access_token; matched case-insensitively) that raw
// carries in its query string, or "" when there is none or raw does not
// parse.
func CredentialInQuery(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	q := u.Query()
	for _, p := range credentialParams {
		for key := range q {
			if strings.EqualFold(key, p) {
				return p
			}
		}
	}
	return ""
}
