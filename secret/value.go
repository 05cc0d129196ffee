package secret

import (
	"fmt"
	"strconv"
)

// Value is a credential read from the configuration. Every way the fmt,
// encoding/json, encoding/text and YAML machinery has of rendering it yields
// [Redacted], so a Value can sit in a configuration struct that is logged or
// dumped with %+v. Only [Value.Reveal] returns the credential, and only the
// code that puts it on the wire calls it.
type Value string

// Reveal returns the credential. Call it only where the value leaves the
// process towards the party it is meant for.
func (v Value) Reveal() string { return string(v) }

// IsSet reports whether the value holds a credential; it is safe to log.
func (v Value) IsSet() bool { return v != "" }

// String redacts a non-empty value. An empty one prints as "", so that "is
// it set?" stays answerable from a dump without telling anybody what it is.
func (v Value) String() string {
	if v == "" {
		return ""
	}
	return Redacted
}

// GoString redacts the value for %#v, which would otherwise print the
// underlying string.
func (v Value) GoString() string { return "secret.Value(" + strconv.Quote(v.String()) + ")" }

// Format redacts the value for every verb, including %x and %q, which would
// otherwise bypass String and print the credential's bytes.
func (v Value) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'q':
		_, _ = f.Write([]byte(strconv.Quote(v.String())))
	case verb == 'v' && f.Flag('#'):
		_, _ = f.Write([]byte(v.GoString()))
	default:
		_, _ = f.Write([]byte(v.String()))
	}
}

// MarshalJSON redacts the value, so a configuration dumped as JSON (or
// logged by zap's reflection encoder) is safe to share.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(v.String())), nil }

// MarshalText redacts the value for encoders that use encoding.TextMarshaler.
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// MarshalYAML redacts the value when a configuration is written back out as
// YAML.
func (v Value) MarshalYAML() (any, error) { return v.String(), nil }
