package receiver

import (
	"fmt"
	"slices"
	"strings"
)

// MemberKind is the JSON shape a specification gives an event member.
type MemberKind string

// The member kinds of the catalogue.
const (
	KindString      MemberKind = "string"
	KindObject      MemberKind = "object"
	KindNumericDate MemberKind = "numeric_date" // integer seconds since the epoch, not negative
	KindStringArray MemberKind = "string_array"
	// KindLangObject: an object of BCP 47 language tag to message, at least
	// one (CAEP 1.0 §2, reason_admin and reason_user).
	KindLangObject MemberKind = "lang_object"
	// KindText: a string or a KindLangObject. RISC 1.0 gives its reason
	// members no type.
	KindText MemberKind = "text"
)

// EventMember is a member of an event object as a specification defines it.
type EventMember struct {
	Name     string
	Kind     MemberKind
	Required bool
	Values   []string // for KindString: the enumerated values, if any
	// Open marks Values as the registered values of an enumeration the
	// specification lets the parties extend by agreement: another value
	// is a warning here (this receiver agreed to none), but a transmitter
	// may send it.
	Open bool
	// NonEmpty, for KindObject, requires at least one member.
	NonEmpty bool
}

// EventType is one CAEP 1.0, RISC 1.0 or SSF 1.0 event type, as this
// receiver reads the specification. It is independent of setrelay's intent
// catalogue; a test compares the two.
type EventType struct {
	URI     string
	Section string // where it is defined
	Members []EventMember
	// SameAs lists alternative URIs for the same event type, which may share
	// one SET's events claim (SSF 1.0 §4.2.1).
	SameAs []string
	// SubjectFormats, when set, are the subject identifier formats the
	// specification allows for the primary subject.
	SubjectFormats []string
}

// Event-type URI prefixes.
const (
	caepPrefix = "https://schemas.openid.net/secevent/caep/event-type/"
	riscPrefix = "https://schemas.openid.net/secevent/risc/event-type/"
	ssfPrefix  = "https://schemas.openid.net/secevent/ssf/event-type/"
)

// CAEP 1.0 §3.3: credential types, which RISC 1.0 §2.7 reuses. CAEP allows
// "any other credential type supported mutually", so another value is a
// warning, never a rejection.
var credentialTypes = []string{"password", "pin", "x509", "fido2-platform", "fido2-roaming", "fido-u2f", "verifiable-credential", "phone-voice", "phone-sms", "app"}

// credentialType is the credential_type member of CAEP 1.0 §3.3 and RISC
// 1.0 §2.7.
var credentialType = EventMember{Name: "credential_type", Kind: KindString, Values: credentialTypes, Open: true, Required: true}

// caepCommon are CAEP 1.0 §2's optional claims, allowed in every CAEP event.
var caepCommon = []EventMember{
	{Name: "event_timestamp", Kind: KindNumericDate},
	{Name: "initiating_entity", Kind: KindString, Values: []string{"admin", "user", "policy", "system"}},
	{Name: "reason_admin", Kind: KindLangObject},
	{Name: "reason_user", Kind: KindLangObject},
}

func str(name string, values ...string) EventMember {
	return EventMember{Name: name, Kind: KindString, Values: values}
}

func required(m EventMember) EventMember { m.Required = true; return m }

func caepType(name, section string, members ...EventMember) EventType {
	return EventType{URI: caepPrefix + name, Section: "CAEP 1.0 " + section, Members: append(members, caepCommon...)}
}

func riscType(name, section string, members ...EventMember) EventType {
	return EventType{URI: riscPrefix + name, Section: "RISC 1.0 " + section, Members: members}
}

var catalogue = []EventType{
	caepType("session-revoked", "§3.1"),
	// claims: "one or more claims with their new value(s)".
	caepType("token-claims-change", "§3.2", required(EventMember{Name: "claims", Kind: KindObject, NonEmpty: true})),
	caepType("credential-change", "§3.3",
		credentialType,
		required(str("change_type", "create", "revoke", "update", "delete")),
		str("friendly_name"), str("x509_issuer"), str("x509_serial"), str("fido2_aaguid")),
	// namespace may be any value agreed between the parties, so it is
	// not enumerated.
	caepType("assurance-level-change", "§3.4",
		required(str("namespace")), required(str("current_level")), str("previous_level"),
		str("change_direction", "increase", "decrease")),
	caepType("device-compliance-change", "§3.5",
		required(str("previous_status", "compliant", "not-compliant")),
		required(str("current_status", "compliant", "not-compliant"))),
	caepType("session-established", "§3.6",
		str("fp_ua"), str("acr"), EventMember{Name: "amr", Kind: KindStringArray}, str("ext_id")),
	caepType("session-presented", "§3.7", str("fp_ua"), str("ext_id")),
	caepType("risk-level-change", "§3.8",
		str("risk_reason"), required(str("principal")),
		required(str("current_level", "LOW", "MEDIUM", "HIGH")), str("previous_level", "LOW", "MEDIUM", "HIGH")),

	riscType("account-credential-change-required", "§2.1"),
	riscType("account-purged", "§2.2"),
	riscType("account-disabled", "§2.3", str("reason", "hijacking", "bulk-account")),
	riscType("account-enabled", "§2.4"),
	withSubjects(riscType("identifier-changed", "§2.5", str("new-value")), "email", "phone_number"),
	withSubjects(riscType("identifier-recycled", "§2.6"), "email", "phone_number"),
	riscType("credential-compromise", "§2.7",
		credentialType,
		EventMember{Name: "event_timestamp", Kind: KindNumericDate},
		EventMember{Name: "reason_admin", Kind: KindText},
		EventMember{Name: "reason_user", Kind: KindText}),
	riscType("opt-in", "§2.8.1"),
	riscType("opt-out-initiated", "§2.8.2"),
	riscType("opt-out-cancelled", "§2.8.3"),
	riscType("opt-out-effective", "§2.8.4"),
	riscType("recovery-activated", "§2.9"),
	riscType("recovery-information-changed", "§2.10"),
	// Deprecated by RISC in favour of CAEP's session-revoked: the two are
	// alternative URIs for one event type.
	sameAs(riscType("sessions-revoked", "§2.11"), caepPrefix+"session-revoked"),

	// A stream event's sub_id "MUST be of format opaque", the stream id.
	{URI: ssfPrefix + "verification", Section: "SSF 1.0 §8.1.4.1", Members: []EventMember{str("state")}, SubjectFormats: []string{"opaque"}},
	{URI: ssfPrefix + "stream-updated", Section: "SSF 1.0 §8.1.5", Members: []EventMember{
		required(str("status", "enabled", "paused", "disabled")), str("reason"),
	}, SubjectFormats: []string{"opaque"}},
}

func withSubjects(t EventType, formats ...string) EventType { t.SubjectFormats = formats; return t }
func sameAs(t EventType, uri string) EventType              { t.SameAs = []string{uri}; return t }

var catalogueByURI = func() map[string]*EventType {
	m := make(map[string]*EventType, len(catalogue))
	for i := range catalogue {
		m[catalogue[i].URI] = &catalogue[i]
	}
	// Alternatives go both ways.
	for i := range catalogue {
		for _, alt := range catalogue[i].SameAs {
			if o := m[alt]; o != nil && !slices.Contains(o.SameAs, catalogue[i].URI) {
				o.SameAs = append(o.SameAs, catalogue[i].URI)
			}
		}
	}
	return m
}()

// EventTypes returns the receiver's catalogue of CAEP 1.0, RISC 1.0 and
// SSF 1.0 event types, for documentation and for the test that compares it
// with setrelay's intent catalogue. The result is a deep copy.
func EventTypes() []EventType {
	out := make([]EventType, len(catalogue))
	for i, t := range catalogue {
		t.Members = append([]EventMember(nil), catalogueByURI[t.URI].Members...)
		for j := range t.Members {
			t.Members[j].Values = append([]string(nil), t.Members[j].Values...)
		}
		t.SameAs = append([]string(nil), catalogueByURI[t.URI].SameAs...)
		t.SubjectFormats = append([]string(nil), t.SubjectFormats...)
		out[i] = t
	}
	return out
}

// checkCatalogue adds the warnings about the events: how many there are,
// and whether each is what its specification defines. Members a
// specification does not name are allowed (SSF 1.0 §4.2.3).
func checkCatalogue(c map[string]any, events map[string]map[string]any, f *findings) {
	types := sortedKeys(events)
	if len(types) > 1 && !alternatives(types) {
		f.add(WEventsMultiple, "%d events (%s); send one event per SET unless they are alternative URIs of the same event type", len(types), strings.Join(types, ", "))
	}
	for _, uri := range types {
		et, known := catalogueByURI[uri]
		if !known {
			if strings.HasPrefix(uri, caepPrefix) || strings.HasPrefix(uri, riscPrefix) || strings.HasPrefix(uri, ssfPrefix) {
				f.add(WEventTypeUnknown, "event type %q is in a CAEP/RISC/SSF namespace but none of those specifications defines it", uri)
			}
			continue
		}
		ev := events[uri]
		for _, m := range et.Members {
			val, present := ev[m.Name]
			if !present {
				if m.Required {
					f.add(WEventMemberMissing, "events[%q].%s is required by %s", uri, m.Name, et.Section)
				}
				continue
			}
			p := kindProblem(m.Kind, val)
			if o, ok := val.(map[string]any); ok && m.NonEmpty && len(o) == 0 {
				p = "a JSON object with one or more members"
			}
			if p != "" {
				f.add(WEventMemberType, "events[%q].%s is %s; %s says %s", uri, m.Name, jsonText(val), et.Section, p)
				continue
			}
			if s, _ := val.(string); len(m.Values) > 0 && !slices.Contains(m.Values, s) {
				agreed := ""
				if m.Open {
					agreed = ", nor a value agreed with this receiver"
				}
				f.add(WEventMemberValue, "events[%q].%s %q is not one of %s%s (%s)", uri, m.Name, s, strings.Join(m.Values, ", "), agreed, et.Section)
			}
		}
		if len(et.SubjectFormats) > 0 {
			if format := primaryFormat(c, ev); format != "" && !slices.Contains(et.SubjectFormats, format) {
				f.add(WSubjectFormat, "%s's subject has format %q; %s wants %s", uri, format, et.Section, strings.Join(et.SubjectFormats, " or "))
			}
		}
	}
}

// alternatives reports whether all the event types name one event type.
func alternatives(types []string) bool {
	first := catalogueByURI[types[0]]
	if first == nil {
		return false
	}
	for _, t := range types[1:] {
		if !slices.Contains(first.SameAs, t) {
			return false
		}
	}
	return true
}

// primaryFormat is the format of the SET's primary subject: the top-level
// sub_id, else the event's subject.
func primaryFormat(c map[string]any, ev map[string]any) string {
	s, ok := c["sub_id"].(map[string]any)
	if !ok {
		s, _ = ev["subject"].(map[string]any)
	}
	format, _ := s["format"].(string)
	return format
}

// kindProblem says how a value fails its kind, or "".
func kindProblem(k MemberKind, v any) string {
	switch k {
	case KindString:
		if _, ok := v.(string); !ok {
			return "a string"
		}
	case KindObject:
		if _, ok := v.(map[string]any); !ok {
			return "a JSON object"
		}
	case KindNumericDate:
		if n, ok := intSeconds(v); !ok || n < 0 {
			return "a NumericDate: a non-negative integer number of seconds"
		}
	case KindStringArray:
		a, ok := v.([]any)
		if !ok {
			return "an array of strings"
		}
		for _, e := range a {
			if _, ok := e.(string); !ok {
				return "an array of strings"
			}
		}
	case KindLangObject:
		if !langObject(v) {
			return "a JSON object of BCP 47 language tag to message, with at least one"
		}
	case KindText:
		if _, ok := v.(string); !ok && !langObject(v) {
			return "a string, or an object of BCP 47 language tag to message"
		}
	default:
		return fmt.Sprintf("an unknown kind %q", k)
	}
	return ""
}

func langObject(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for tag, msg := range m {
		if _, ok := msg.(string); !ok || !languageTag(tag) {
			return false
		}
	}
	return true
}

// languageTag is a shallow BCP 47 check (RFC 5646 §2.1): subtags of 1 to 8
// letters or digits joined by "-", the first all letters. It catches the
// usual mistakes (en_GB, a blank key) without a registry.
func languageTag(s string) bool {
	if s == "" {
		return false
	}
	for i, sub := range strings.Split(s, "-") {
		if len(sub) < 1 || len(sub) > 8 {
			return false
		}
		for _, c := range []byte(sub) {
			letter := c|0x20 >= 'a' && c|0x20 <= 'z'
			if !letter && (i == 0 || c < '0' || c > '9') {
				return false
			}
		}
	}
	return true
}
