package receiver

import (
	"fmt"
	"net/http"
)

// Severity says what the receiver does when a rule is broken.
type Severity string

const (
	// Reject: the standard says MUST (or MUST NOT); the push is refused.
	Reject Severity = "reject"
	// Warn: the standard says SHOULD, or the event does not match the
	// CAEP 1.0, RISC 1.0 or SSF 1.0 definition of its type. The SET is
	// accepted, the finding counted in Stats.Warnings and logged once per
	// kind; Config.Strict turns it into 400 invalid_request.
	Warn Severity = "warn"
)

// Rule is one check the receiver makes, with where the standards state it.
// The table is this receiver's own reading of RFC 8417, RFC 8935, RFC 9493,
// RFC 6750 and OpenID SSF 1.0, CAEP 1.0 and RISC 1.0; it deliberately
// shares nothing with setrelay's transmitter side, so that a misreading on
// one side cannot hide in both.
type Rule struct {
	Kind     string   // the key in Stats.Violations or Stats.Warnings
	Severity Severity // Reject or Warn
	Status   int      // HTTP status of a rejection (warnings: 400 under Strict)
	Err      string   // RFC 8935 err of a rejection; "" for a bare 405
	Section  string   // where the rule is stated
	Summary  string   // what the rule says, in one line
}

// rules is every rule, in the order the receiver checks them. Each kind
// appears once.
var rules = []Rule{
	// The HTTP request (RFC 8935 §2.1, RFC 6750).
	{VMethod, Reject, 405, "", "RFC 8935 §2.1", "SETs are delivered with HTTP POST"},
	{VSourceDenied, Reject, 403, ErrAccessDenied, "RFC 8935 §2.4 (--allow-from)", "the source address must be on the allow-list, when one is configured"},
	{VTokenInURL, Reject, 400, ErrInvalidRequest, "RFC 6750 §5.3", "the bearer token must not be sent in the URL"},
	{VTokenMissing, Reject, 401, ErrAuthenticationFailed, "RFC 6750 §2.1, RFC 8935 §2.4", "an Authorization: Bearer token from the token endpoint is required"},
	{VTokenInvalid, Reject, 401, ErrAuthenticationFailed, "RFC 6750 §3.1, RFC 8935 §2.4", "the bearer token must be one this receiver issued"},
	{VTokenExpired, Reject, 401, ErrAuthenticationFailed, "RFC 6750 §3.1, RFC 8935 §2.4", "the bearer token must not have expired"},
	{VTokenRevoked, Reject, 401, ErrAuthenticationFailed, "RFC 6750 §3.1, RFC 8935 §2.4", "the bearer token must not have been revoked"},
	{VContentType, Reject, 400, ErrInvalidRequest, "RFC 8935 §2.1", "Content-Type must be application/secevent+jwt"},
	{VAcceptMissing, Reject, 400, ErrInvalidRequest, "RFC 8935 §2.1", "the Accept header must be sent, as application/json"},
	{VAcceptUnacceptable, Reject, 400, ErrInvalidRequest, "RFC 8935 §2.1", "Accept must admit application/json"},
	{VBodyTooLarge, Reject, 400, ErrInvalidRequest, "RFC 8935 §2.1 (--max-body)", "the body must be one SET, at most --max-body bytes"},

	// The JWS (RFC 8417 §2.3, RFC 7515, SSF 1.0 §4.1.1).
	{VJWSMalformed, Reject, 400, ErrInvalidRequest, "RFC 8935 §2.1, RFC 7515 §7.1", "the body must be one SET in JWS compact serialization"},
	{VAlgNotAllowed, Reject, 400, ErrInvalidRequest, "RFC 8725 §3.1 (--alg)", "alg must be an asymmetric algorithm on the allow-list, never none"},
	{VTyp, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.3, SSF 1.0 §4.1.1", "the JOSE header typ must be secevent+jwt"},
	{VKIDUnknown, Reject, 400, ErrInvalidKey, "RFC 8935 §2.4, SSF 1.0 §4.1.4", "a registered key must match the kid and alg"},
	{VSignature, Reject, 400, ErrInvalidKey, "RFC 8935 §2.4, RFC 7515 §5.2", "the signature must verify with a registered key"},
	{VKeyTooSmall, Reject, 400, ErrInvalidKey, "RFC 8935 §2.4 (CAEP interoperability profile)", "RSA keys must have at least 2048 bits"},

	// The claims (RFC 8417 §2.2, RFC 7519, SSF 1.0 §3 and §4).
	{VClaimsMalformed, Reject, 400, ErrInvalidRequest, "RFC 7519 §7.2", "the JWS payload must be one JSON object"},
	{VClaimsDuplicate, Reject, 400, ErrInvalidRequest, "RFC 7519 §4", "member names must not repeat within an object"},
	{VISSMissing, Reject, 400, ErrInvalidIssuer, "RFC 8417 §2.2, SSF 1.0 §4.1.6", "iss is required"},
	{VISSMismatch, Reject, 400, ErrInvalidIssuer, "SSF 1.0 §4.1.6", "iss must be the registered issuer (--issuer)"},
	{VAudMissing, Reject, 400, ErrInvalidAudience, "RFC 7519 §4.1.3, SSF 1.0 §4.1.8", "aud is required"},
	{VAudMismatch, Reject, 400, ErrInvalidAudience, "RFC 7519 §4.1.3, SSF 1.0 §4.1.8", "aud must be, or contain, this receiver's audience (--audience)"},
	{VIATMissing, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "iat is required"},
	{VIATNotInteger, Reject, 400, ErrInvalidRequest, "RFC 7519 §2 (NumericDate), §4.1.6", "iat must be an integer NumericDate"},
	{VIATMillis, Reject, 400, ErrInvalidRequest, "RFC 7519 §2 (NumericDate)", "iat must be in seconds, not milliseconds"},
	{VIATFuture, Reject, 400, ErrInvalidRequest, "RFC 7519 §4.1.6 (--clock-skew)", "iat must not be in the future beyond the allowed clock skew"},
	{VJTIMissing, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2, RFC 7519 §4.1.7", "jti is required, a non-empty string"},
	{VJTIReuseMismatch, Reject, 400, ErrInvalidRequest, "RFC 7519 §4.1.7, RFC 8935 §2", "a jti already accepted must come back with identical claims"},
	{VEventsMissing, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "events is required"},
	{VEventsInvalid, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "events must be a JSON object with at least one event"},
	{VEventTypeInvalid, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "each event type in events must be an absolute URI"},
	{VEventNotObject, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "each event must be a JSON object ({} when it has no members)"},
	{VEventsDuplicate, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "an event type must not appear twice in events"},
	{VSubPresent, Reject, 400, ErrInvalidRequest, "SSF 1.0 §4.1.2, §4.1.3", "sub must not be present; the subject goes in sub_id"},
	{VExpPresent, Reject, 400, ErrInvalidRequest, "SSF 1.0 §4.1.7, §4.1.3", "exp must not be present"},
	{VSubIDMissing, Reject, 400, ErrInvalidRequest, "SSF 1.0 §3.1, §3.1.1 (--mode sub_id)", "the top-level sub_id is required"},
	{VSubIDInvalid, Reject, 400, ErrInvalidRequest, "RFC 9493 §3, SSF 1.0 §3.2–§3.5", "sub_id must be a valid subject identifier, simple or complex"},
	{VSubjectMissing, Reject, 400, ErrInvalidRequest, "SSF 1.0 §3.1.1 (--mode in_event|either)", "the subject must be where the receiver expects it"},
	{VSubjectInvalid, Reject, 400, ErrInvalidRequest, "RFC 9493 §3, SSF 1.0 §3.2–§3.5", "a subject inside an event must be a valid subject identifier"},
	{VTxnInvalid, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "txn, when present, must be a non-empty string"},
	{VToeInvalid, Reject, 400, ErrInvalidRequest, "RFC 8417 §2.2", "toe, when present, must be an integer NumericDate"},

	// SHOULDs and the event catalogue: warnings.
	{WSubIDMissing, Warn, 400, ErrInvalidRequest, "SSF 1.0 §3.1.1 (--mode either)", "transmitters should include the top-level sub_id even when the event carries a subject"},
	{WTxnMissing, Warn, 400, ErrInvalidRequest, "SSF 1.0 §4.1.9", "transmitters should set txn"},
	{WEventsMultiple, Warn, 400, ErrInvalidRequest, "SSF 1.0 §4.2.1, RFC 8417 §2.2", "events should hold one event; several only as alternative URIs of the same event type"},
	{WEventTypeUnknown, Warn, 400, ErrInvalidRequest, "CAEP 1.0 §3, RISC 1.0 §2, SSF 1.0 §8.1.4–§8.1.5", "an event type in the CAEP, RISC or SSF namespace should be one those specifications define"},
	{WEventMemberMissing, Warn, 400, ErrInvalidRequest, "CAEP 1.0 §3, RISC 1.0 §2, SSF 1.0 §8.1.5", "an event should carry the members its specification requires"},
	{WEventMemberType, Warn, 400, ErrInvalidRequest, "CAEP 1.0 §2–§3, RISC 1.0 §2, SSF 1.0 §8.1.4–§8.1.5", "an event member should have the JSON type its specification gives"},
	{WEventMemberValue, Warn, 400, ErrInvalidRequest, "CAEP 1.0 §2–§3, RISC 1.0 §2, SSF 1.0 §8.1.5", "an enumerated event member should take one of its specification's values"},
	{WSubjectTypeLegacy, Warn, 400, ErrInvalidRequest, "RISC 1.0 §3.1", "a subject names its format with \"format\"; the legacy \"subject_type\" is deprecated"},
	{WSubjectFormat, Warn, 400, ErrInvalidRequest, "RISC 1.0 §2.5–§2.6, SSF 1.0 §8.1.4.1, §8.1.5", "identifier-changed and identifier-recycled must name an email or phone_number subject, verification and stream-updated an opaque stream id"},
}

// Violation kinds added by the full SSF profile. The older ones are in
// violation.go; every kind has a row in rules.
const (
	VClaimsDuplicate  = "claims_duplicate"   // 400 invalid_request: a member name repeated
	VEventTypeInvalid = "event_type_invalid" // 400 invalid_request: an events key that is not an absolute URI
	VEventsDuplicate  = "events_duplicate"   // 400 invalid_request: an event type twice in events
)

// Warning kinds, the keys of Stats.Warnings.
const (
	WSubIDMissing       = "sub_id_absent" // only an in-event subject, in mode either
	WTxnMissing         = "txn_missing"
	WEventsMultiple     = "events_multiple"
	WEventTypeUnknown   = "event_type_unknown"
	WEventMemberMissing = "event_member_missing"
	WEventMemberType    = "event_member_type"
	WEventMemberValue   = "event_member_value"
	WSubjectFormat      = "subject_format"
	WSubjectTypeLegacy  = "subject_type_legacy"
)

var rulesByKind = func() map[string]Rule {
	m := make(map[string]Rule, len(rules))
	for _, r := range rules {
		if _, dup := m[r.Kind]; dup {
			panic("receiver: rule " + r.Kind + " listed twice")
		}
		m[r.Kind] = r
	}
	return m
}()

// Rules returns every rule the receiver checks, in the order it checks
// them, for documentation and tools. The slice is a copy.
func Rules() []Rule { return append([]Rule(nil), rules...) }

// finding builds the violation or warning of a rule; the description
// names the rule and its section, then says what was found.
func finding(kind, detail string) violation {
	r, ok := rulesByKind[kind]
	if !ok {
		panic("receiver: no rule " + kind)
	}
	return violation{
		kind:  kind,
		code:  r.Err,
		desc:  fmt.Sprintf("%s (%s): %s", kind, r.Section, detail),
		fatal: r.Severity == Reject,
	}
}

// statusOf is the HTTP status a rejection of this kind is answered with.
func statusOf(kind string) int {
	if r, ok := rulesByKind[kind]; ok && r.Status != 0 {
		return r.Status
	}
	return http.StatusBadRequest
}
