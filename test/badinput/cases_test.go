package badinput

import (
	"strconv"
	"strings"
)

// badCase is one kind of bad intent: the bytes a broken producer sends and a
// substring the dead letter's errors must contain, so that the operator
// reading it learns which field is wrong and why.
type badCase struct {
	name string
	data []byte
	want string
	// notKept: the bytes are too large for the dead letter (NATS
	// max_payload), which says so instead of holding them.
	notKept bool
}

// good is a valid intent body with the given id; the bad cases are mutations of it.
func good(id string) string {
	return `{"id":"` + id + `","type":"caep.session-revoked","subject":{"format":"email","email":"alice@example.com"}}`
}

// withSubject is a session-revoked intent with the given subject JSON.
func withSubject(id, subject string) []byte {
	return []byte(`{"id":"` + id + `","type":"caep.session-revoked","subject":` + subject + `}`)
}

// manyReceivers is the 65,534-byte intent of issue 11: every receiver a
// number, so every element is a problem.
func manyReceivers() []byte {
	head := `{"id":"x","type":"caep.session-revoked","receivers":[`
	return []byte(head + strings.Repeat("0,", (65534-len(head)-2-1)/2) + `0]}`)
}

// badCases is the catalogue. Every row must end in the dead-letter stream
// with reason invalid_intent and an error containing want.
func badCases() []badCase {
	const emailSubj = `{"format":"email","email":"alice@example.com"}`
	big := func(n int) []byte {
		// A valid intent whose event carries one long string member, so
		// only the size is wrong.
		head := `{"id":"big-` + strconv.Itoa(n) + `","type":"caep.session-revoked","subject":` + emailSubj + `,"event":{"note":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	deep := func(n int) []byte {
		return []byte(`{"id":"deep","type":"caep.session-revoked","subject":` + emailSubj + `,"event":{"x":` +
			strings.Repeat("[", n) + strings.Repeat("]", n) + `}}`)
	}
	return []badCase{
		{"malformed_json", []byte(`{"id" "bad-1","type":"caep.session-revoked"}`), "invalid JSON at byte 6: expected ':'", false},
		{"truncated_json", []byte(`{"id":"bad-2","type":"caep.session-rev`), "unterminated string", false},
		{"trailing_garbage", []byte(good("bad-3") + `}`), "unexpected data after the top-level value", false},
		{"two_documents", []byte(good("bad-4") + good("bad-4b")), "unexpected data after the top-level value", false},
		{"id_number", []byte(`{"id":42,"type":"caep.session-revoked","subject":` + emailSubj + `}`), "id: must be a string, got number", false},
		{"type_array", []byte(`{"id":"bad-6","type":["caep.session-revoked"],"subject":` + emailSubj + `}`), "type: must be a string", false},
		{"subject_string", []byte(`{"id":"bad-7","type":"caep.session-revoked","subject":"alice@example.com"}`), "subject: must be an object", false},
		{"event_array", []byte(`{"id":"bad-8","type":"caep.session-revoked","subject":` + emailSubj + `,"event":[]}`), "event: must be an object, got array", false},
		{"occurred_at_number", []byte(`{"id":"bad-9","type":"caep.session-revoked","subject":` + emailSubj + `,"occurred_at":1700000000}`), "occurred_at: must be an RFC 3339 date-time string", false},
		{"receivers_object", []byte(`{"id":"bad-10","type":"caep.session-revoked","subject":` + emailSubj + `,"receivers":{"rcv":true}}`), "receivers: must be an array of receiver names, got object", false},
		{"receivers_element_number", []byte(`{"id":"bad-11","type":"caep.session-revoked","subject":` + emailSubj + `,"receivers":[7]}`), "receivers[0]: must be a receiver name string, got number", false},
		{"txn_number", []byte(`{"id":"bad-12","type":"caep.session-revoked","subject":` + emailSubj + `,"txn":12}`), "txn: must be a string, got number", false},
		{"unknown_top_level_field", []byte(`{"id":"bad-13","type":"caep.session-revoked","subject":` + emailSubj + `,"severity":"high"}`), "severity: unknown member", false},
		{"unknown_type_alias", []byte(`{"id":"bad-14","type":"caep.session-revokd","subject":` + emailSubj + `}`), "did you mean \"caep.session-revoked\"", false},
		{"unknown_type_openid_uri_typo", []byte(`{"id":"bad-15","type":"https://schemas.openid.net/secevent/caep/event-type/session-revokd","subject":` + emailSubj + `}`), "is not a CAEP 1.0, RISC 1.0 or SSF 1.0 event type", false},
		{"private_type_not_allowed", []byte(`{"id":"bad-16","type":"https://events.example.com/secevent/user-moved","subject":` + emailSubj + `}`), "private types are not enabled", false},
		{"missing_type", []byte(`{"id":"bad-17","subject":` + emailSubj + `}`), "type: required", false},
		{"subject_unknown_member", withSubject("bad-18", `{"format":"email","email":"alice@example.com","phone_number":"+441234567890"}`), "subject.phone_number: unknown member for format \"email\"", false},
		{"subject_missing_format", withSubject("bad-19", `{"email":"alice@example.com"}`), "subject.format: required", false},
		{"subject_unknown_format", withSubject("bad-20", `{"format":"nickname","nickname":"al"}`), "subject.format: unknown format \"nickname\"", false},
		{"subject_email_without_at", withSubject("bad-21", `{"format":"email","email":"alice.example.com"}`), "subject.email: \"alice.example.com\" is not an email address", false},
		{"subject_phone_not_e164", withSubject("bad-22", `{"format":"phone_number","phone_number":"01234 567890"}`), "subject.phone_number: \"01234 567890\" is not an E.164 number", false},
		{"subject_aliases_empty", withSubject("bad-23", `{"format":"aliases","identifiers":[]}`), "subject.identifiers: must be a non-empty array", false},
		{"subject_aliases_nested", withSubject("bad-24", `{"format":"aliases","identifiers":[{"format":"aliases","identifiers":[`+emailSubj+`]}]}`), "subject.identifiers[0].format: \"aliases\" identifiers must not nest", false},
		{"subject_complex_with_format", withSubject("bad-25", `{"format":"email","user":`+emailSubj+`}`), "subject.user: unknown member for format \"email\"", false},
		{"subject_iss_sub_missing_sub", withSubject("bad-26", `{"format":"iss_sub","iss":"https://idp.example.com/"}`), "subject.sub: required", false},
		{"missing_subject", []byte(`{"id":"bad-27","type":"caep.session-revoked"}`), "subject: required for this event type", false},
		{"credential_change_without_change_type", []byte(`{"id":"bad-28","type":"caep.credential-change","subject":` + emailSubj + `,"event":{"credential_type":"password"}}`), "event.change_type: required for caep.credential-change", false},
		{"bad_enum_change_type", []byte(`{"id":"bad-29","type":"caep.credential-change","subject":` + emailSubj + `,"event":{"credential_type":"password","change_type":"replace"}}`), "event.change_type: \"replace\" is not allowed", false},
		// credential_type is open by agreement (CAEP 1.0 section 3.3), so the
		// closed enumeration here is initiating_entity (section 2).
		{"bad_enum_initiating_entity", []byte(`{"id":"bad-30","type":"caep.credential-change","subject":` + emailSubj + `,"event":{"credential_type":"password","change_type":"update","initiating_entity":"robot"}}`), "event.initiating_entity: \"robot\" is not allowed", false},
		{"payload_over_64KiB", big(65<<10 + 1), "intent is 66561 bytes; the limit is 65536", false},
		{"payload_near_1MiB", big(1<<20 - 4<<10), "intent is 1044480 bytes; the limit is 65536", false},
		{"payload_at_nats_max_payload", big(1<<20 - 256), "intent is 1048320 bytes; the limit is 65536", true},
		// Bytes that cannot be inlined in the dead letter's JSON are
		// base64-encoded there, a third larger than the intent.
		{"payload_near_1MiB_pretty_printed", append([]byte("{\n  "), big(1<<20 - 8<<10)[1:]...), "intent is 1040387 bytes; the limit is 65536", true},
		{"payload_near_1MiB_invalid_utf8", append(big(1<<20-8<<10), 0xff), "intent is 1040385 bytes; the limit is 65536", true},
		{"invalid_utf8", []byte(`{"id":"bad-33","type":"caep.session-revoked","subject":{"format":"email","email":"al` + "\xff\xfe" + `@example.com"}}`), "intent is not valid UTF-8", false},
		{"empty_body", []byte{}, "invalid JSON at byte 0: unexpected end of input", false},
		{"whitespace_only", []byte(" \n\t "), "unexpected end of input", false},
		{"json_array", []byte(`[` + good("bad-36") + `]`), "intent must be a JSON object, got array", false},
		{"json_string", []byte(`"caep.session-revoked"`), "intent must be a JSON object, got string", false},
		{"json_number", []byte(`42`), "intent must be a JSON object, got number", false},
		{"json_null", []byte(`null`), "intent must be a JSON object, got null", false},
		{"json_true", []byte(`true`), "intent must be a JSON object, got boolean", false},
		{"deep_nesting_10k_arrays", deep(10000), "nested deeper than 64 levels", false},
		{"duplicate_keys", []byte(`{"id":"bad-42","id":"bad-42b","type":"caep.session-revoked","subject":` + emailSubj + `}`), "id: duplicate member", false},
		{"missing_id", []byte(`{"type":"caep.session-revoked","subject":` + emailSubj + `}`), "id: required", false},
		{"id_too_long", []byte(good(strings.Repeat("a", 129))), "id: longer than 128 characters", false},
		{"id_with_spaces", []byte(good("bad 45")), "id: must be printable ASCII without spaces", false},
		{"id_empty", []byte(good("")), "id: required", false},
		{"occurred_at_bad_format", []byte(`{"id":"bad-47","type":"caep.session-revoked","subject":` + emailSubj + `,"occurred_at":"27/11/2026 04:05"}`), "occurred_at: \"27/11/2026 04:05\" is not an RFC 3339 date-time", false},
		{"txn_empty", []byte(`{"id":"bad-48","type":"caep.session-revoked","subject":` + emailSubj + `,"txn":""}`), "txn: must not be empty", false},
		{"extra_events_repeat_main_type", []byte(`{"id":"bad-49","type":"caep.session-revoked","subject":` + emailSubj + `,"extra_events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{}}}`), "repeats the main event type", false},
		{"extra_events_not_object", []byte(`{"id":"bad-50","type":"caep.session-revoked","subject":` + emailSubj + `,"extra_events":{"https://vocab.account.gov.uk/secevent/v1/eventMetadata":"x"}}`), "must be an object (use {} for no members), got string", false},
		{"bom_prefixed", append([]byte("\xef\xbb\xbf"), good("bad-51")...), "invalid JSON at byte 0: unexpected byte order mark (U+FEFF)", false},
		{"nul_byte_inside_string", []byte(`{"id":"bad-52","type":"caep.session-revoked","subject":{"format":"email","email":"alice` + "\x00" + `@example.com"}}`), "subject.email: invalid JSON at byte 87: control character in string", false},
		{"nul_byte_after_document", append([]byte(good("bad-53")), 0), "invalid JSON at byte 102: unexpected data after the top-level value", false},
		{"control_char_in_string", []byte(`{"id":"bad-54","type":"caep.session-revoked","subject":{"format":"email","email":"al` + "\n" + `ice@example.com"}}`), "subject.email: invalid JSON at byte 84: control character in string", false},
		{"single_quotes", []byte(`{'id':'bad-55','type':'caep.session-revoked'}`), "expected a member name in double quotes", false},
		{"smart_quotes", []byte(`{"id":“bad-57”,"type":"caep.session-revoked","subject":` + emailSubj + `}`), "id: invalid JSON at byte 6: unexpected character '“'", false},
		// Issue 11: 32,718 problems in 65,534 bytes. The dead letter keeps
		// the first 50 (in errors only) and the bytes, and fits.
		{"receivers_32718_numbers", manyReceivers(), "receivers[0]: must be a receiver name string, got number", false},
		// A 64-bit id sent as a number: the SET would carry another one.
		{"integer_beyond_2pow53", []byte(`{"id":"bad-58","type":"caep.session-revoked","subject":` + emailSubj + `,"event":{"x":12345678901234567890}}`), "event.x: integer 12345678901234567890 is beyond ±(2^53-1)", false},
		// A GOV.UK type is accepted without private types enabled, and
		// the type becomes a metric label and a log field.
		{"type_uri_60KiB", []byte(`{"id":"bad-59","type":"https://vocab.account.gov.uk/secevent/v1/` + strings.Repeat("x", 60<<10) + `","subject":` + emailSubj + `}`), "type: longer than 512 bytes", false},
		{"numbers_nan", []byte(`{"id":"bad-56","type":"caep.session-revoked","subject":` + emailSubj + `,"event":{"x":NaN}}`), "event.x: invalid JSON at byte 115: unexpected character 'N'", false},
	}
}
