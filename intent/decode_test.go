package intent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustProblems decodes data and returns its problems, failing if it was
// accepted or failed with another error type.
func mustProblems(t *testing.T, data string, opts Options) []FieldError {
	t.Helper()
	in, err := Decode([]byte(data), opts)
	if err == nil {
		t.Fatalf("Decode accepted %s as %+v", data, in)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError: %v", err, err)
	}
	if len(ve.Errors) == 0 {
		t.Fatal("ValidationError without problems")
	}
	return ve.Errors
}

func hasProblem(list []FieldError, field, substr string) bool {
	for _, fe := range list {
		if fe.Field == field && strings.Contains(fe.Problem, substr) {
			return true
		}
	}
	return false
}

const emailSubject = `{"format":"email","email":"alice@example.com"}`

// withSubject builds an intent of the given type with a valid subject.
func withSubject(typ, extra string) string {
	s := `{"id":"evt-1","type":"` + typ + `","subject":` + emailSubject
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestDecodeRules(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		opts  Options
		field string
		want  string // substring of the problem
	}{
		// id
		{"id missing", `{"type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "required"},
		{"id empty", `{"id":"","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "required"},
		{"id space", `{"id":"a b","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "printable ASCII"},
		{"id control", `{"id":"a\u0001","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "printable ASCII"},
		{"id non-ASCII", `{"id":"café","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "printable ASCII"},
		{"id too long", `{"id":"` + strings.Repeat("x", 129) + `","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "longer than 128"},
		{"id number", `{"id":7,"type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "must be a string, got number"},

		// type
		{"type missing", `{"id":"a","subject":` + emailSubject + `}`, Options{}, "type", "required"},
		{"type unknown alias", withSubject("caep.sessionrevoked", ""), Options{}, "type", `aliases look like "caep.session-revoked"`},
		{"type alias suggestion", withSubject("risc.acount-disabled", ""), Options{}, "type", `did you mean "risc.account-disabled"`},
		{"type bare word", withSubject("logout", ""), Options{AllowPrivateTypes: true}, "type", "unknown event type alias"},
		{"type reserved namespace", withSubject(CAEPPrefix+"session-revokd", ""), Options{AllowPrivateTypes: true}, "type", "not a CAEP 1.0, RISC 1.0 or SSF 1.0"},
		{"type private disabled", withSubject("https://example.com/e", ""), Options{}, "type", "private types are not enabled"},
		{"type not absolute", withSubject("1http://x", ""), Options{AllowPrivateTypes: true}, "type", "not an absolute URI"},
		{"type with space", withSubject("urn:a b", ""), Options{AllowPrivateTypes: true}, "type", "not an absolute URI"},
		{"type array", `{"id":"a","type":["caep.session-revoked"],"subject":` + emailSubject + `}`, Options{}, "type", "must be a string"},

		// subject presence and shape
		{"subject missing", `{"id":"a","type":"caep.session-revoked"}`, Options{}, "subject", "required"},
		{"subject missing private", `{"id":"a","type":"https://example.com/e"}`, Options{AllowPrivateTypes: true}, "subject", "required"},
		{"subject missing govuk", `{"id":"a","type":"` + GOVUKPrefix + `accountPurged"}`, Options{}, "subject", "required"},
		{"subject string", `{"id":"a","type":"caep.session-revoked","subject":"alice"}`, Options{}, "subject", "must be an object"},
		{"subject null", `{"id":"a","type":"caep.session-revoked","subject":null}`, Options{}, "subject", "got null"},
		{"subject empty", withSubjectRaw(`{}`), Options{}, "subject.format", "required"},
		{"subject legacy other type", withSubjectRaw(`{"subject_type":"email","email":"a@b.c"}`), Options{}, "subject.subject_type", `only the legacy value "iss-sub"`},
		{"subject legacy extra member", withSubjectRaw(`{"subject_type":"iss-sub","iss":"i","sub":"s","email":"a@b.c"}`), Options{}, "subject.email", "unknown member"},
		{"subject legacy missing sub", withSubjectRaw(`{"subject_type":"iss-sub","iss":"i"}`), Options{}, "subject.sub", "required"},
		{"subject format and subject_type", withSubjectRaw(`{"format":"iss_sub","subject_type":"iss-sub","iss":"i","sub":"s"}`), Options{}, "subject.subject_type", "unknown member"},
		{"complex without format", withSubjectRaw(`{"user":` + emailSubject + `}`), Options{}, "subject.format", `needs "format": "complex"`},
		{"complex nested", withSubjectRaw(`{"format":"complex","user":{"format":"complex","user":` + emailSubject + `}}`), Options{}, "subject.user.format", "cannot nest"},
		{"complex member not object", withSubjectRaw(`{"format":"complex","user":"alice"}`), Options{}, "subject.user", "must be a subject identifier object"},
		{"complex member bad", withSubjectRaw(`{"format":"complex","device":{"format":"opaque"}}`), Options{}, "subject.device.id", "required"},

		// event: required members and enumerations
		{"credential-change no event", withSubject("caep.credential-change", ""), Options{}, "event.credential_type", "required"},
		{"credential-change no change_type", withSubject("caep.credential-change", `"event":{"credential_type":"pin"}`), Options{}, "event.change_type", "create, revoke, update, delete"},
		// CAEP 1.0 section 3.3: credential_type "MUST be one of the following
		// strings, or any other credential type supported mutually", so any
		// non-empty string is allowed (TestOpenCredentialType), but not
		// another JSON type or an empty string.
		{"credential_type number", withSubject("caep.credential-change", `"event":{"credential_type":7,"change_type":"create"}`), Options{}, "event.credential_type", "must be a string"},
		{"credential_type empty", withSubject("caep.credential-change", `"event":{"credential_type":"","change_type":"create"}`), Options{}, "event.credential_type", "must not be empty"},
		{"credential-compromise credential_type empty", withSubject("risc.credential-compromise", `"event":{"credential_type":""}`), Options{}, "event.credential_type", "must not be empty"},
		{"change_type enum", withSubject("caep.credential-change", `"event":{"credential_type":"pin","change_type":"rotate"}`), Options{}, "event.change_type", "is not allowed"},
		{"friendly_name type", withSubject("caep.credential-change", `"event":{"credential_type":"pin","change_type":"create","friendly_name":3}`), Options{}, "event.friendly_name", "must be a string"},
		{"token-claims claims missing", withSubject("caep.token-claims-change", `"event":{}`), Options{}, "event.claims", "required"},
		// CAEP 1.0 section 3.2: claims is "one or more claims with their new value(s)".
		{"token-claims claims empty", withSubject("caep.token-claims-change", `"event":{"claims":{}}`), Options{}, "event.claims", "one or more"},
		{"token-claims claims array", withSubject("caep.token-claims-change", `"event":{"claims":[]}`), Options{}, "event.claims", "must be an object"},
		{"assurance namespace missing", withSubject("caep.assurance-level-change", `"event":{"current_level":"x"}`), Options{}, "event.namespace", "required"},
		{"assurance current_level empty", withSubject("caep.assurance-level-change", `"event":{"namespace":"RFC8176","current_level":""}`), Options{}, "event.current_level", "must not be empty"},
		{"change_direction enum", withSubject("caep.assurance-level-change", `"event":{"namespace":"RFC8176","current_level":"x","change_direction":"up"}`), Options{}, "event.change_direction", "increase, decrease"},
		{"current_status enum", withSubject("caep.device-compliance-change", `"event":{"previous_status":"compliant","current_status":"ok"}`), Options{}, "event.current_status", "compliant, not-compliant"},
		{"previous_status missing", withSubject("caep.device-compliance-change", `"event":{"current_status":"compliant"}`), Options{}, "event.previous_status", "required"},
		{"risk current_level enum", withSubject("caep.risk-level-change", `"event":{"principal":"USER","current_level":"high"}`), Options{}, "event.current_level", "LOW, MEDIUM, HIGH"},
		{"risk principal missing", withSubject("caep.risk-level-change", `"event":{"current_level":"HIGH"}`), Options{}, "event.principal", "required"},
		{"risk previous_level enum", withSubject("caep.risk-level-change", `"event":{"principal":"USER","current_level":"HIGH","previous_level":"SEVERE"}`), Options{}, "event.previous_level", "is not allowed"},
		{"amr not array", withSubject("caep.session-established", `"event":{"amr":"pwd"}`), Options{}, "event.amr", "array of strings"},
		{"amr element", withSubject("caep.session-established", `"event":{"amr":["pwd",1]}`), Options{}, "event.amr[1]", "must be a string"},
		{"initiating_entity enum", withSubject("caep.session-revoked", `"event":{"initiating_entity":"robot"}`), Options{}, "event.initiating_entity", "admin, user, policy, system"},
		{"event_timestamp fraction", withSubject("caep.session-revoked", `"event":{"event_timestamp":1.5}`), Options{}, "event.event_timestamp", "NumericDate"},
		{"event_timestamp negative", withSubject("caep.session-revoked", `"event":{"event_timestamp":-1}`), Options{}, "event.event_timestamp", "non-negative"},
		// Seconds (CAEP 1.0 section 2), bounded like occurred_at: a
		// milliseconds value would date the event tens of millennia ahead,
		// and a value past 2^63 overflows receivers' integer claims.
		{"event_timestamp milliseconds", withSubject("caep.session-revoked", `"event":{"event_timestamp":1615304991000}`), Options{}, "event.event_timestamp", "milliseconds"},
		{"event_timestamp huge", withSubject("caep.session-revoked", `"event":{"event_timestamp":1e21}`), Options{}, "event.event_timestamp", "year 9999"},
		{"credential-compromise event_timestamp milliseconds", withSubject("risc.credential-compromise", `"event":{"credential_type":"password","event_timestamp":1615304991000}`), Options{}, "event.event_timestamp", "milliseconds"},
		{"event_timestamp string", withSubject("caep.session-revoked", `"event":{"event_timestamp":"1700000000"}`), Options{}, "event.event_timestamp", "NumericDate"},
		{"reason_admin number", withSubject("caep.session-revoked", `"event":{"reason_admin":5}`), Options{}, "event.reason_admin", "language tag"},
		{"reason_user empty object", withSubject("caep.session-revoked", `"event":{"reason_user":{}}`), Options{}, "event.reason_user", "must not be an empty object"},
		{"reason_user bad tag", withSubject("caep.session-revoked", `"event":{"reason_user":{"en_GB":"x"}}`), Options{}, "event.reason_user.en_GB", "not a language tag"},
		{"reason_user value", withSubject("caep.session-revoked", `"event":{"reason_user":{"en":true}}`), Options{}, "event.reason_user.en", "must be a string"},
		{"account-disabled reason enum", withSubject("risc.account-disabled", `"event":{"reason":"spam"}`), Options{}, "event.reason", "hijacking, bulk-account"},
		{"identifier-changed new-value type", withSubject("risc.identifier-changed", `"event":{"new-value":1}`), Options{}, "event.new-value", "must be a string"},
		// RISC 1.0 section 2.5 and 2.6: "The subject type MUST be either email or phone".
		{"identifier-changed iss_sub subject", `{"id":"a","type":"risc.identifier-changed","subject":{"format":"iss_sub","iss":"https://idp.example.com/","sub":"u1"}}`, Options{}, "subject.format", "email or phone_number"},
		{"identifier-recycled opaque subject", `{"id":"a","type":"risc.identifier-recycled","subject":{"format":"opaque","id":"u1"}}`, Options{}, "subject.format", "email or phone_number"},
		{"identifier-recycled complex subject", `{"id":"a","type":"risc.identifier-recycled","subject":{"format":"complex","user":` + emailSubject + `}}`, Options{}, "subject.format", "email or phone_number"},
		{"identifier-changed legacy subject", `{"id":"a","type":"risc.identifier-changed","subject":{"subject_type":"iss-sub","iss":"https://idp.example.com/","sub":"u1"}}`, Options{}, "subject.format", "email or phone_number"},
		{"credential-compromise type missing", withSubject("risc.credential-compromise", `"event":{}`), Options{}, "event.credential_type", "required"},
		// SSF 1.0 sections 8.1.4.1 and 8.1.5: a stream event's sub_id is
		// "REQUIRED" and "MUST be of format opaque", naming the stream.
		{"verification without subject", `{"id":"a","type":"ssf.verification","event":{"state":"s"}}`, Options{}, "subject", "required"},
		{"stream-updated email subject", `{"id":"a","type":"ssf.stream-updated","subject":` + emailSubject + `,"event":{"status":"paused"}}`, Options{}, "subject.format", "opaque"},
		{"verification complex subject", `{"id":"a","type":"ssf.verification","subject":{"format":"complex","tenant":{"format":"opaque","id":"t"}}}`, Options{}, "subject.format", "opaque"},
		{"stream-updated status missing", `{"id":"a","type":"ssf.stream-updated","event":{}}`, Options{}, "event.status", "enabled, paused, disabled"},
		{"stream-updated status enum", `{"id":"a","type":"ssf.stream-updated","event":{"status":"on"}}`, Options{}, "event.status", "is not allowed"},
		{"event subject", withSubject("risc.account-disabled", `"event":{"subject":`+emailSubject+`}`), Options{}, "event.subject", "top-level subject"},
		// A GOV.UK or private main event may not carry its own subject
		// either, as its extra_events may not: the SET would hold two
		// subjects (sub_id and the event's), or none at all could be built
		// for a receiver that wants the subject placed in the event.
		{"event subject govuk", withSubject(GOVUKPrefix+"accountPurged", `"event":{"subject":`+emailSubject+`}`), Options{}, "event.subject", "top-level subject"},
		{"event subject private", withSubject("https://example.com/e", `"event":{"subject":"x"}`), Options{AllowPrivateTypes: true}, "event.subject", "top-level subject"},
		{"event string", withSubject("caep.session-revoked", `"event":"x"`), Options{}, "event", "must be an object"},
		{"private event not object", withSubject("https://example.com/e", `"event":[1]`), Options{AllowPrivateTypes: true}, "event", "must be an object"},

		// occurred_at
		{"occurred_at number", withSubject("caep.session-revoked", `"occurred_at":1700000000`), Options{}, "occurred_at", "RFC 3339"},
		{"occurred_at date only", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at no zone", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27T04:05:06"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at comma", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27T04:05:06,5Z"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at lowercase", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27t04:05:06z"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at bad day", withSubject("caep.session-revoked", `"occurred_at":"2026-02-30T04:05:06Z"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at offset 24h", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27T04:05:06+24:00"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at offset minutes", withSubject("caep.session-revoked", `"occurred_at":"2026-11-27T04:05:06+01:60"`), Options{}, "occurred_at", "not an RFC 3339"},
		{"occurred_at RFC 1123", withSubject("caep.session-revoked", `"occurred_at":"Fri, 27 Nov 2026 04:05:06 GMT"`), Options{}, "occurred_at", "not an RFC 3339"},

		// txn
		{"txn number", withSubject("caep.session-revoked", `"txn":5`), Options{}, "txn", "must be a string"},
		{"txn empty", withSubject("caep.session-revoked", `"txn":""`), Options{}, "txn", "must not be empty"},
		{"txn too long", withSubject("caep.session-revoked", `"txn":"`+strings.Repeat("t", 257)+`"`), Options{}, "txn", "longer than 256"},

		// receivers
		{"receivers string", withSubject("caep.session-revoked", `"receivers":"govuk"`), Options{}, "receivers", "array of receiver names"},
		{"receivers empty", withSubject("caep.session-revoked", `"receivers":[]`), Options{}, "receivers", "omit it"},
		{"receivers empty name", withSubject("caep.session-revoked", `"receivers":["a",""]`), Options{}, "receivers[1]", "must not be empty"},
		{"receivers duplicate", withSubject("caep.session-revoked", `"receivers":["a","b","a"]`), Options{}, "receivers[2]", "duplicate of receivers[0]"},
		{"receivers number", withSubject("caep.session-revoked", `"receivers":["a",1]`), Options{}, "receivers[1]", "receiver name string"},
		{"receivers long", withSubject("caep.session-revoked", `"receivers":["`+strings.Repeat("r", 129)+`"]`), Options{}, "receivers[0]", "longer than 128"},

		// extra_events
		{"extra_events array", withSubject("caep.session-revoked", `"extra_events":[]`), Options{}, "extra_events", "must be an object"},
		{"extra_events relative key", withSubject("caep.session-revoked", `"extra_events":{"eventMetadata":{}}`), Options{}, "extra_events.eventMetadata", "absolute event-type URI"},
		{"extra_events value", withSubject("caep.session-revoked", `"extra_events":{"https://e.example/x":1}`), Options{}, `extra_events["https://e.example/x"]`, "must be an object"},
		// An extra event shares the SET's subject, so its type's subject
		// rule applies to the top-level subject too.
		{"extra_events identifier-changed with iss_sub subject", `{"id":"a","type":"caep.session-revoked","subject":{"format":"iss_sub","iss":"https://idp.example.com/","sub":"u1"},"extra_events":{"` + RISCPrefix + `identifier-changed":{}}}`, Options{}, "subject.format", "risc.identifier-changed needs a subject of format email or phone_number"},
		{"extra_events catalogue type members checked", withSubject("caep.session-revoked", `"extra_events":{"`+CAEPPrefix+`credential-change":{"credential_type":"password"}}`), Options{}, `extra_events["` + CAEPPrefix + `credential-change"].change_type`, "required for caep.credential-change"},
		{"extra_events catalogue enum checked", withSubject("caep.session-revoked", `"extra_events":{"`+RISCPrefix+`account-disabled":{"reason":"boredom"}}`), Options{}, `extra_events["` + RISCPrefix + `account-disabled"].reason`, `"boredom" is not allowed`},
		{"extra_events OpenID typo", withSubject("caep.session-revoked", `"extra_events":{"`+CAEPPrefix+`credential-chang":{}}`), Options{}, `extra_events["` + CAEPPrefix + `credential-chang"]`, "is not a CAEP 1.0, RISC 1.0 or SSF 1.0 event type"},
		{"extra_events private type not enabled", withSubject("caep.session-revoked", `"extra_events":{"https://e.example/x":{}}`), Options{}, `extra_events["https://e.example/x"]`, "private types are not enabled"},
		{"extra_events alias key", withSubject("caep.session-revoked", `"extra_events":{"caep.credential-change":{}}`), Options{}, `extra_events["caep.credential-change"]`, `use "` + CAEPPrefix + `credential-change"`},
		{"extra_events subject in catalogue type", withSubject("caep.session-revoked", `"extra_events":{"`+RISCPrefix+`account-purged":{"subject":{"format":"opaque","id":"x"}}}`), Options{}, `extra_events["` + RISCPrefix + `account-purged"].subject`, "not allowed"},
		{"extra_events subject in GOV.UK type", withSubject("caep.session-revoked", `"extra_events":{"`+GOVUKPrefix+`eventMetadata":{"subject":{"format":"opaque","id":"x"}}}`), Options{}, `extra_events["` + GOVUKPrefix + `eventMetadata"].subject`, "not allowed"},
		{"extra_events repeats main", withSubject("caep.session-revoked", `"extra_events":{"`+CAEPPrefix+`session-revoked":{}}`), Options{}, `extra_events["` + CAEPPrefix + `session-revoked"]`, "repeats the main event type"},

		// document level
		{"unknown member", withSubject("caep.session-revoked", `"sub_id":{}`), Options{}, "sub_id", "unknown member"},
		{"duplicate top-level", `{"id":"a","id":"b","type":"caep.session-revoked","subject":` + emailSubject + `}`, Options{}, "id", "duplicate member"},
		{"duplicate nested", withSubjectRaw(`{"format":"email","email":"a@b.c","email":"c@d.e"}`), Options{}, "subject.email", "duplicate member"},
		{"not an object", `["id"]`, Options{}, "", "must be a JSON object, got array"},
		{"null document", `null`, Options{}, "", "got null"},
		{"syntax error", `{"id":"a",}`, Options{}, "", "invalid JSON at byte 10"},
		{"trailing data", withSubject("caep.session-revoked", "") + `{}`, Options{}, "", "unexpected data after"},
		{"truncated", `{"id":"a","type":"caep.sess`, Options{}, "type", "unterminated string"},
		{"bad escape", `{"id":"a\x"}`, Options{}, "id", "invalid escape"},
		{"raw control char", "{\"id\":\"a\tb\"}", Options{}, "id", "control character"},
		{"number out of range", withSubject("https://example.com/e", `"event":{"n":1e999}`), Options{AllowPrivateTypes: true}, "event.n", "out of range"},
		{"integer beyond float64", withSubject("https://example.com/e", `"event":{"n":9007199254740993}`), Options{AllowPrivateTypes: true}, "event.n", "integer 9007199254740993 is beyond ±(2^53-1)"},
		{"negative integer beyond float64", withSubject("https://example.com/e", `"event":{"n":[-12345678901234567890123]}`), Options{AllowPrivateTypes: true}, "event.n[0]", "send it as a string"},
		{"GOV.UK type too long", withSubject("https://vocab.account.gov.uk/secevent/v1/"+strings.Repeat("x", 600), ""), Options{}, "type", "longer than 512 bytes (641)"},
		{"private type too long", withSubject("https://example.com/"+strings.Repeat("x", 600), ""), Options{AllowPrivateTypes: true}, "type", "longer than 512 bytes"},
		{"extra_events key too long", withSubject("caep.session-revoked", `"extra_events":{"https://vocab.account.gov.uk/secevent/v1/`+strings.Repeat("x", 600)+`":{}}`), Options{}, truncate(`extra_events["https://vocab.account.gov.uk/secevent/v1/`+strings.Repeat("x", 600)+`"]`, MaxFieldLength), "key longer than 512 bytes"},
		{"leading zero", `{"id":01}`, Options{}, "", "expected ',' or '}'"},
		{"empty", ``, Options{}, "", "unexpected end of input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			probs := mustProblems(t, tc.in, tc.opts)
			if !hasProblem(probs, tc.field, tc.want) {
				t.Errorf("want a problem at %q containing %q, got %q", tc.field, tc.want, probs)
			}
		})
	}
}

func withSubjectRaw(subject string) string {
	return `{"id":"evt-1","type":"caep.session-revoked","subject":` + subject + `}`
}

// TestDecodeReportsEveryProblem checks that problems in different fields are
// all reported in one error, not only the first.
func TestDecodeReportsEveryProblem(t *testing.T) {
	in := `{"id":"a b","type":"caep.credential-change","subject":{"format":"email","email":"nope","x":1},
		"event":{"credential_type":"password","change_type":"rotate"},"occurred_at":"yesterday","receivers":["a","a"],"bogus":true}`
	probs := mustProblems(t, in, Options{})
	want := []struct{ field, substr string }{
		{"id", "printable"},
		{"subject.email", "not an email address"},
		{"subject.x", "unknown member"},
		{"event.change_type", "not allowed"},
		{"occurred_at", "RFC 3339"},
		{"receivers[1]", "duplicate"},
		{"bogus", "unknown member"},
	}
	for _, w := range want {
		if !hasProblem(probs, w.field, w.substr) {
			t.Errorf("missing problem %s (%s) in %q", w.field, w.substr, probs)
		}
	}
	if len(probs) != len(want) {
		t.Errorf("got %d problems, want %d: %q", len(probs), len(want), probs)
	}
}

// TestWrongTypeIsReportedOnce checks that a field of the wrong JSON type
// gets one problem, not also "required".
func TestWrongTypeIsReportedOnce(t *testing.T) {
	probs := mustProblems(t, `{"id":"a","type":"caep.session-revoked","subject":[1]}`, Options{})
	if len(probs) != 1 || probs[0].Field != "subject" {
		t.Fatalf("want exactly one problem at subject, got %q", probs)
	}
}

func TestDecodeSizeAndEncoding(t *testing.T) {
	t.Run("size cap checked first", func(t *testing.T) {
		big := make([]byte, MaxSize+1)
		for i := range big {
			big[i] = 0xff // also invalid UTF-8 and not JSON: only the size is reported
		}
		probs := mustProblems(t, string(big), Options{})
		if len(probs) != 1 || !strings.Contains(probs[0].Problem, "the limit is 65536") {
			t.Fatalf("got %q", probs)
		}
	})
	t.Run("exactly MaxSize is accepted", func(t *testing.T) {
		base := withSubject("caep.session-revoked", `"txn":"t"`)
		pad := MaxSize - len(base)
		doc := base[:len(base)-1] + strings.Repeat(" ", pad) + "}"
		if len(doc) != MaxSize {
			t.Fatalf("test bug: %d bytes", len(doc))
		}
		if _, err := Decode([]byte(doc), Options{}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("invalid UTF-8", func(t *testing.T) {
		probs := mustProblems(t, withSubject("caep.session-revoked", "\"txn\":\"\xc3\x28\""), Options{})
		if !hasProblem(probs, "", "not valid UTF-8") {
			t.Fatalf("got %q", probs)
		}
	})
	t.Run("deep nesting", func(t *testing.T) {
		for _, open := range []string{"[", `{"a":`} {
			doc := withSubject("https://example.com/e", `"event":{"x":`+strings.Repeat(open, 10000)+`}`)
			probs := mustProblems(t, doc, Options{AllowPrivateTypes: true})
			if !strings.Contains(probs[0].Problem, "nested deeper than 64") {
				t.Fatalf("got %q", probs)
			}
		}
	})
}

// TestOpenCredentialType: CAEP 1.0 section 3.3 lets credential_type be "any
// other credential type supported mutually by the Transmitter and the
// Receiver", and RISC 1.0 section 2.7 takes its values from there, so a
// value outside the listed ones is signed, not refused.
func TestOpenCredentialType(t *testing.T) {
	for _, doc := range []string{
		withSubject("caep.credential-change", `"event":{"credential_type":"totp","change_type":"create"}`),
		withSubject("risc.credential-compromise", `"event":{"credential_type":"recovery-code"}`),
		withSubject("caep.session-revoked", `"extra_events":{"`+CAEPPrefix+`credential-change":{"credential_type":"passkey","change_type":"update"}}`),
	} {
		if _, err := Decode([]byte(doc), Options{}); err != nil {
			t.Errorf("Decode(%s): %v", doc, err)
		}
	}
}

func TestDecodeValid(t *testing.T) {
	data := `{"id":"evt-0001","type":"caep.session-revoked","subject":{"format":"email","email":"alice@example.com"},
		"event":{"event_timestamp":1615304991,"reason_admin":{"en":"Policy \u00e9 \ud83d\ude00"}},
		"occurred_at":"2026-11-27T05:05:06.5+01:00","txn":"t-1","receivers":["govuk","okta"],
		"extra_events":{"https://vocab.account.gov.uk/secevent/v1/eventMetadata":{"k":"v"}}}`
	in, err := Decode([]byte(data), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Intent{
		ID:         "evt-0001",
		Type:       "caep.session-revoked",
		Subject:    map[string]any{"format": "email", "email": "alice@example.com"},
		Event:      map[string]any{"event_timestamp": float64(1615304991), "reason_admin": map[string]any{"en": "Policy é 😀"}},
		Txn:        "t-1",
		Receivers:  []string{"govuk", "okta"},
		EventType:  CAEPPrefix + "session-revoked",
		OccurredAt: in.OccurredAt,
		ExtraEvents: map[string]map[string]any{
			GOVUKPrefix + "eventMetadata": {"k": "v"},
		},
	}
	if !reflect.DeepEqual(in, want) {
		t.Fatalf("got  %+v\nwant %+v", in, want)
	}
	if in.OccurredAt == nil || !in.OccurredAt.Equal(time.Date(2026, 11, 27, 4, 5, 6, 5e8, time.UTC)) {
		t.Fatalf("occurred_at = %v", in.OccurredAt)
	}
}

// TestParserMatchesEncodingJSON checks that the hand-written parser yields
// the same values encoding/json does, on every accepted corpus file and on
// escapes.
func TestParserMatchesEncodingJSON(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "intents", "good", "*.json"))
	docs := [][]byte{
		[]byte(`{"a":"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00 \ud800 x \udc00\u0041 \ud800\u0041","b":[1,-0.5,2e10,1E-3,true,false,null,{}],"c":{}}`),
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	for _, d := range docs {
		var p problems
		ps := parser{data: d, probs: &p}
		got, err := ps.parseDocument()
		if err != nil {
			t.Fatalf("parse %s: %q", d, p.list)
		}
		var want any
		if err := json.Unmarshal(d, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parser and encoding/json differ on %s:\n got %#v\nwant %#v", d, got, want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	one := &ValidationError{Errors: []FieldError{{Field: "id", Problem: "required"}}}
	if got, want := one.Error(), "invalid intent: id: required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	two := &ValidationError{Errors: []FieldError{{Field: "id", Problem: "required"}, {Problem: "not JSON"}}}
	if got, want := two.Error(), "invalid intent: 2 problems: id: required; not JSON"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := two.Problems(); !reflect.DeepEqual(got, []string{"id: required", "not JSON"}) {
		t.Errorf("Problems() = %q", got)
	}
}

// TestValidateGoBuilt covers intents built in Go rather than decoded:
// Go-typed values are understood and EventType is filled.
func TestValidateGoBuilt(t *testing.T) {
	at := time.Date(2026, 11, 27, 4, 5, 6, 0, time.UTC)
	in := &Intent{
		ID:   "go-1",
		Type: "caep.credential-change",
		Subject: map[string]any{
			"format": "complex",
			"user":   map[string]string{"format": "ip-addresses"}, // wrong, see below
			"device": map[string]any{"format": "aliases", "identifiers": []map[string]any{{"format": "ip-addresses", "ip-addresses": []string{"192.0.2.1"}}}},
		},
		Event:      map[string]any{"credential_type": "x509", "change_type": "revoke", "event_timestamp": int64(1700000000)},
		OccurredAt: &at,
		Receivers:  []string{"a"},
	}
	err := in.Validate(Options{})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) != 1 || ve.Errors[0].Field != "subject.user.ip-addresses" {
		t.Fatalf("want one problem at subject.user.ip-addresses, got %v", err)
	}
	in.Subject["user"] = map[string]string{"format": "email", "email": "a@b.c"}
	if err := in.Validate(Options{}); err != nil {
		t.Fatal(err)
	}
	if in.EventType != CAEPPrefix+"credential-change" {
		t.Fatalf("EventType = %q", in.EventType)
	}

	bad := &Intent{
		ID:          "go-2",
		Type:        "ssf.verification",
		Subject:     map[string]any{"format": "opaque", "id": "stream-1"},
		ExtraEvents: map[string]map[string]any{"https://e.example/x": nil},
		OccurredAt:  func() *time.Time { t := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC); return &t }(),
	}
	err = bad.Validate(Options{})
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	if !hasProblem(ve.Errors, `extra_events["https://e.example/x"]`, "must be an object") ||
		!hasProblem(ve.Errors, "occurred_at", "9999") || len(ve.Errors) != 2 {
		t.Fatalf("got %q", ve.Errors)
	}
	if bad.EventType != SSFPrefix+"verification" {
		t.Fatalf("EventType = %q", bad.EventType)
	}
}

func TestPrivateAndGOVUKTypes(t *testing.T) {
	govuk := withSubject(GOVUKPrefix+"accountBlock", `"event":{"anything":{"goes":[1]}}`)
	for _, opts := range []Options{{}, {AllowPrivateTypes: true}} {
		in, err := Decode([]byte(govuk), opts)
		if err != nil {
			t.Fatalf("GOV.UK type with %+v: %v", opts, err)
		}
		if in.EventType != GOVUKPrefix+"accountBlock" {
			t.Fatalf("EventType = %q", in.EventType)
		}
	}
	private := withSubject("urn:example:locked", `"event":{"anything":{"goes":[1]}}`)
	if _, err := Decode([]byte(private), Options{}); err == nil {
		t.Fatal("private type accepted without AllowPrivateTypes")
	}
	in, err := Decode([]byte(private), Options{AllowPrivateTypes: true})
	if err != nil {
		t.Fatal(err)
	}
	if in.EventType != "urn:example:locked" {
		t.Fatalf("EventType = %q", in.EventType)
	}
}

func TestResolveType(t *testing.T) {
	tests := []struct {
		name, uri string
		known     bool
	}{
		{"caep.session-revoked", CAEPPrefix + "session-revoked", true},
		{RISCPrefix + "account-disabled", RISCPrefix + "account-disabled", true},
		{"ssf.stream-updated", SSFPrefix + "stream-updated", true},
		{GOVUKPrefix + "accountPurged", GOVUKPrefix + "accountPurged", true},
		{GOVUKPrefix, GOVUKPrefix, false},
		{"https://example.com/e", "https://example.com/e", false},
		{CAEPPrefix + "nope", "", false},
		{"caep.nope", "", false},
		{"", "", false},
		{"urn:a b", "", false},
	}
	for _, tc := range tests {
		uri, known := ResolveType(tc.name)
		if uri != tc.uri || known != tc.known {
			t.Errorf("ResolveType(%q) = %q, %v; want %q, %v", tc.name, uri, known, tc.uri, tc.known)
		}
	}
}

func TestWantsSubject(t *testing.T) {
	tests := map[string]bool{
		"ssf.verification":           true,
		SSFPrefix + "stream-updated": true,
		"caep.session-revoked":       true,
		GOVUKPrefix + "x":            true,
		"urn:example:private":        true,
	}
	for typ, want := range tests {
		if got := (&Intent{Type: typ}).WantsSubject(); got != want {
			t.Errorf("WantsSubject(%s) = %v, want %v", typ, got, want)
		}
	}
}

// TestValidationErrorCarriesParsedID: a failed Decode still names the
// intent when its id parsed and is valid, and names none when the id is
// itself a problem.
func TestValidationErrorCarriesParsedID(t *testing.T) {
	for doc, want := range map[string]string{
		`{"id":"evt-7","type":"no.such-type","subject":{"format":"email","email":"a@example.com"}}`:   "evt-7",
		`{"id":7,"type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`: "",
		`{"id":"","type":"caep.session-revoked"}`:                                                     "",
		`{"type":"caep.session-revoked"}`:                                                             "",
	} {
		_, err := Decode([]byte(doc), Options{})
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("Decode(%s) = %v, want a ValidationError", doc, err)
		}
		if ve.ID != want {
			t.Errorf("Decode(%s): ID %q, want %q", doc, ve.ID, want)
		}
	}
}
