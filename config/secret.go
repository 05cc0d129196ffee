package config

import (
	"fmt"
	"strconv"
)

// redacted replaces a secret wherever it would otherwise be printed.
const redacted = "[REDACTED]"

// Secret is a credential read from the configuration (a client secret, a
// static Authorization header, a NATS password or token). It redacts itself
// in every printed or encoded form, so a Config can be logged, dumped with
// %+v or marshalled to JSON without leaking it. Reveal returns the value for
// the one place that must send it.
type Secret string

// Reveal returns the secret itself. Call it only where the value leaves the
// process towards the party it is meant for.
func (s Secret) Reveal() string { return string(s) }

// String redacts a non-empty secret; an empty one prints as "" so that
// "is it set?" stays answerable from a dump.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString covers %#v, which would otherwise print the underlying string.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format covers every fmt verb (%s, %v, %+v, %q, %x ...): without it %x
// would print the secret's bytes in hex.
func (s Secret) Format(f fmt.State, verb rune) {
	switch verb {
	case 'q':
		fmt.Fprint(f, strconv.Quote(s.String()))
	default:
		fmt.Fprint(f, s.String())
	}
}

// MarshalJSON redacts the secret in JSON (and so in zap's reflected fields).
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// MarshalYAML redacts the secret when a Config is written back out as YAML.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }
