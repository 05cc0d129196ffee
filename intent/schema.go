package intent

import _ "embed"

//go:embed schema.json
var schemaJSON []byte

// Schema returns the JSON Schema (draft 2020-12) of an intent, for
// producers in other languages to validate before publishing. It describes
// what Decode accepts with Options.AllowPrivateTypes set, provided the
// validator asserts the date-time, uri, ipv4 and ipv6 formats. Decode alone
// also rejects duplicate member names and an extra_events entry that
// repeats the main event type, which JSON Schema cannot express. The
// returned slice is a copy.
func Schema() []byte {
	return append([]byte(nil), schemaJSON...)
}
