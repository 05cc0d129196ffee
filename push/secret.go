package push

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
)

// redacted is what every rendering of a non-empty Secret prints.
const redacted = "[REDACTED]"

// Secret is a credential (a client secret, a static Authorization header
// value) that must never be printed. Every way the fmt, encoding/json and
// encoding/text machinery has of rendering it yields "[REDACTED]", so a
// Secret can sit in a config struct that is logged or dumped with %+v. Only
// [Secret.Reveal] returns the value, and only the code that puts it on the
// wire calls it.
type Secret string

// Reveal returns the secret's value. Call it only where the value goes on
// the wire.
func (s Secret) Reveal() string { return string(s) }

// IsSet reports whether the secret holds a value; it is safe to log.
func (s Secret) IsSet() bool { return s != "" }

// String redacts the value, so that %v, %s and Stringer-based loggers never
// show it. An empty secret prints as the empty string, which tells an operator
// that it is missing without telling anybody what it is.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString redacts the value for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("push.Secret(%q)", s.String()) }

// Format redacts the value for every verb, including %x and %q, which would
// otherwise bypass String.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprintf(f, "%q", s.String())
	case 'v':
		if f.Flag('#') {
			_, _ = f.Write([]byte(s.GoString()))
			return
		}
		_, _ = f.Write([]byte(s.String()))
	default:
		_, _ = f.Write([]byte(s.String()))
	}
}

// MarshalJSON redacts the value, so a config dumped as JSON is safe to share.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(fmt.Sprintf("%q", s.String())), nil }

// MarshalText redacts the value for YAML, text and zap's reflection encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// ErrSecretSource reports a secret reference that cannot be resolved: an
// unset environment variable or an unreadable file. Its message names the
// variable or file, never a value.
var ErrSecretSource = errors.New("push: secret source")

// envRef matches a ${NAME} environment reference.
var envRef = regexp.MustCompile(`\$\{[A-Za-z_][A-Za-z0-9_]*\}`)

// LoadSecret resolves a secret from configuration. value may be a literal or
// contain ${NAME} references (a bare $ is kept as it is) to environment variables; file, when not empty,
// names a file whose content (without a trailing newline) is the secret, as
// Kubernetes and systemd credentials provide it. Setting both is an error
// because it is ambiguous which one the operator meant.
func LoadSecret(value, file string) (Secret, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%w: both a value and a file are set; set one", ErrSecretSource)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is configuration, not a secret; the os error names it.
			return "", fmt.Errorf("%w: %w", ErrSecretSource, err)
		}
		return Secret(strings.TrimRight(string(b), "\r\n")), nil
	}
	// Only the braced form is expanded: a literal secret may well contain a
	// bare "$", which os.Expand would eat.
	var missing []string
	expanded := envRef.ReplaceAllStringFunc(value, func(ref string) string {
		name := ref[2 : len(ref)-1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("%w: environment variable(s) %s not set", ErrSecretSource, strings.Join(missing, ", "))
	}
	return Secret(expanded), nil
}
