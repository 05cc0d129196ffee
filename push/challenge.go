package push

import (
	"net/http"
	"strconv"
	"strings"
)

// maxChallenge bounds how much of the WWW-Authenticate values is looked at,
// so a receiver's huge header costs no more than this to scan.
const maxChallenge = 4 << 10

// bearerChallenge returns the auth-params of the first Bearer challenge in
// the WWW-Authenticate fields (RFC 9110 section 11.6.1; RFC 6750 section
// 3), names lower-cased, or nil when there is none or it cannot be parsed.
// A field may hold several challenges ("Basic realm=x, Bearer error=...")
// and there may be several fields.
func bearerChallenge(h http.Header) map[string]string {
	vals := h.Values("Www-Authenticate")
	if len(vals) == 0 {
		return nil
	}
	s := strings.Join(vals, ", ")
	if len(s) > maxChallenge {
		s = s[:maxChallenge]
	}
	var params map[string]string
	inBearer := false
	for i := 0; i < len(s); {
		// Skip list separators and white space.
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
			i++
		}
		j := i
		for j < len(s) && isTchar(s[j]) {
			j++
		}
		if j == i {
			return nil // not a token where one must be: malformed
		}
		name := s[i:j]
		k := j
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		if k >= len(s) || s[k] != '=' {
			// A new challenge's auth-scheme.
			if params != nil {
				return params // the Bearer challenge has ended
			}
			inBearer = strings.EqualFold(name, "bearer")
			if inBearer {
				params = map[string]string{}
			}
			i = j
			continue
		}
		// An auth-param (or a token68's padding, skipped with it).
		k++
		for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
			k++
		}
		var value string
		if k < len(s) && s[k] == '"' {
			end := quotedEnd(s, k)
			if end < 0 {
				return nil // unterminated quoted-string
			}
			value, i = unquote(s[k+1:end]), end+1
		} else {
			e := k
			for e < len(s) && (isTchar(s[e]) || s[e] == '=' || s[e] == '/') {
				e++
			}
			value, i = s[k:e], e
		}
		if inBearer {
			params[strings.ToLower(name)] = value
		}
	}
	return params
}

// quotedEnd returns the index of the quote closing the quoted-string that
// starts at s[start], or -1.
func quotedEnd(s string, start int) int {
	for i := start + 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// unquote undoes a quoted-string's quoted-pairs (RFC 9110 5.6.4): a
// backslash stands for the character after it.
func unquote(q string) string {
	if !strings.Contains(q, `\`) {
		return q
	}
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+1 < len(q) {
			i++
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// isTchar reports whether c is an RFC 9110 tchar.
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// insufficientScope reports whether the response challenges the token with
// RFC 6750's insufficient_scope, and describes what the receiver said.
func insufficientScope(h http.Header) (desc string, ok bool) {
	p := bearerChallenge(h)
	if p == nil || p["error"] != "insufficient_scope" {
		return "", false
	}
	var parts []string
	if d := p["error_description"]; d != "" {
		parts = append(parts, d)
	}
	if sc := p["scope"]; sc != "" {
		parts = append(parts, "scope required: "+strconv.Quote(sc))
	}
	return strings.Join(parts, "; "), true
}
