package intent

import (
	"encoding/json"
	"testing"
)

// benchIntent is a realistic intent of about 500 bytes: a CAEP
// credential-change with a complex subject, occurred_at, txn, receivers and
// a GOV.UK-style extra event.
var benchIntent = []byte(`{
  "id": "01JDQ8K6Z3W9V4X2N7M5P1R0TA",
  "type": "caep.credential-change",
  "subject": {
    "format": "complex",
    "user": {"format": "email", "email": "alice@example.com"},
    "tenant": {"format": "opaque", "id": "tenant-8f3a2c"}
  },
  "event": {
    "credential_type": "fido2-roaming",
    "change_type": "create",
    "friendly_name": "Alice's security key",
    "initiating_entity": "user",
    "event_timestamp": 1795752306,
    "reason_admin": {"en": "User enrolled a new key"}
  },
  "occurred_at": "2026-11-27T04:05:06Z",
  "txn": "b9f1c4e2-7d3a-4e8b-9c1f-2a6d5e8b0c3d",
  "receivers": ["govuk", "okta"],
  "extra_events": {"https://vocab.account.gov.uk/secevent/v1/eventMetadata": {"source": "portal"}}
}`)

// BenchmarkDecode measures Decode (parse and validate) on benchIntent.
// BenchmarkDecode/encoding_json is the baseline: a plain, non-validating
// json.Unmarshal of the same bytes into Intent in the same run.
func BenchmarkDecode(b *testing.B) {
	if _, err := Decode(benchIntent, Options{}); err != nil {
		b.Fatal(err)
	}
	b.Run("intent.Decode", func(b *testing.B) {
		b.SetBytes(int64(len(benchIntent)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(benchIntent, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(benchIntent)))
		b.ReportAllocs()
		for b.Loop() {
			var in Intent
			if err := json.Unmarshal(benchIntent, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}
