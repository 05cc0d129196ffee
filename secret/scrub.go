package secret

import (
	"bytes"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Scrubber removes credentials from text that came back from a remote
// party: receivers and token endpoints echo the request in their error
// bodies, in the escaping of their own language, and those bodies end up in
// dead letters and logs. Build one per set of credentials; it is safe for
// concurrent use.
type Scrubber struct {
	// forms are longest first, so a longer form is replaced whole before a
	// shorter one inside it; raw holds the same as bytes.
	forms []string
	raw   [][]byte
}

// NewScrubber returns a Scrubber for the given credentials. Each may be a
// bare secret or a whole Authorization header value ("Basic ...",
// "Bearer ..."), whose credential part is then scrubbed on its own too.
// Empty credentials are ignored.
func NewScrubber(credentials ...string) *Scrubber {
	var all []string
	for _, c := range credentials {
		if c != "" {
			all = append(all, forms(c)...)
		}
	}
	slices.SortStableFunc(all, func(a, b string) int { return len(b) - len(a) })
	all = slices.Compact(all)
	s := &Scrubber{forms: all, raw: make([][]byte, len(all))}
	for i, f := range all {
		s.raw[i] = []byte(f)
	}
	return s
}

// Bytes returns b with every form of the credentials replaced by
// [Redacted]. b is returned unchanged (not copied) when it holds none.
func (s *Scrubber) Bytes(b []byte) []byte {
	if s == nil || len(b) == 0 {
		return b
	}
	for _, f := range s.raw {
		if bytes.Contains(b, f) {
			b = bytes.ReplaceAll(b, f, []byte(Redacted))
		}
	}
	return b
}

// String is Bytes for a string.
func (s *Scrubber) String(text string) string {
	if s == nil || text == "" {
		return text
	}
	for _, f := range s.forms {
		if strings.Contains(text, f) {
			text = strings.ReplaceAll(text, f, Redacted)
		}
	}
	return text
}

// forms lists what an echoed credential can look like: as sent, and for an
// Authorization value its bare credential; each with "/" escaped as JSON
// encoders in PHP and Java write it, with every character but the
// unreserved ones escaped as \u00XX, and URL-encoded (a redirect's query).
// Last come the credential's runs of at least 8 characters that no escaping
// changes, so an echo in an escaping not listed here still loses the bulk
// of the secret.
func forms(cred string) []string {
	bases := []string{cred}
	if _, bare, ok := strings.Cut(cred, " "); ok && len(bare) >= 8 {
		bases = append(bases, bare)
	}
	out := make([]string, 0, 5*len(bases)+4)
	for _, b := range bases {
		out = append(out, b, strings.ReplaceAll(b, "/", `\/`), unicodeEscape(b), url.QueryEscape(b), url.PathEscape(b))
	}
	for _, run := range strings.FieldsFunc(cred, func(r rune) bool { return !unreserved(r) }) {
		if len(run) >= 8 {
			out = append(out, run)
		}
	}
	return out
}

// unreserved: the characters no JSON or URL escaping rewrites.
func unreserved(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == '~'
}

// unicodeEscape writes every character but the unreserved ones as \u00XX.
func unicodeEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unreserved(r) || r > 0x7f {
			b.WriteRune(r)
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}
