package intent

import (
	"sort"
	"strings"

	"github.com/setrelay/setrelay/internal/suggest"
)

// Event-type URI prefixes of the three OpenID Shared Signals specifications.
const (
	CAEPPrefix = "https://schemas.openid.net/secevent/caep/event-type/"
	RISCPrefix = "https://schemas.openid.net/secevent/risc/event-type/"
	SSFPrefix  = "https://schemas.openid.net/secevent/ssf/event-type/"

	// GOVUKPrefix is the event-type vocabulary of GOV.UK One Login's SSF
	// receiver. It is treated as known (sendable without
	// Options.AllowPrivateTypes) because GOV.UK is the deployment setrelay was
	// started for, its types are published by GOV.UK rather than invented by
	// an operator, and requiring every GOV.UK sender to switch on private
	// types would also open the door to typos in any other namespace.
	// Setrelay does not know the members of each GOV.UK type, so their
	// event objects are free-form.
	GOVUKPrefix = "https://vocab.account.gov.uk/secevent/v1/"
)

// Profile names the specification an event type comes from.
type Profile string

// The profiles of KnownTypes.
const (
	ProfileCAEP Profile = "caep"
	ProfileRISC Profile = "risc"
	ProfileSSF  Profile = "ssf"
)

// TypeInfo describes one event type of the CAEP 1.0, RISC 1.0 or SSF 1.0
// catalogue.
type TypeInfo struct {
	URI     string  // absolute event-type URI, as it appears in a SET's events claim
	Alias   string  // short name producers may send instead, e.g. "caep.session-revoked"
	Profile Profile // caep, risc or ssf
	// SubjectRequired is true for every catalogue type: SSF 1.0 gives every
	// SET a subject, and its stream events (verification, stream-updated)
	// name the stream (sections 8.1.4.1 and 8.1.5: sub_id "REQUIRED").
	SubjectRequired bool
	// Required lists the event members the specification requires.
	Required []string
	// Deprecated marks types the specification keeps only for compatibility.
	Deprecated bool
	// SubjectFormats, when not empty, are the only subject identifier
	// formats the specification allows for this type.
	SubjectFormats []string
}

// subjectRule says why a type's subject formats are restricted, for the
// error message: what the subject must name, and where the rule is.
type subjectRule struct {
	names   string // e.g. "the stream, with the stream id as id"
	section string // e.g. "SSF 1.0 section 8.1.4.1"
}

// memberKind is the JSON shape of an event member.
type memberKind int

const (
	kindString      memberKind = iota
	kindObject                 // a JSON object
	kindNumericDate            // a non-negative integer, seconds since the epoch
	kindStringArray            // an array of strings
	kindLangText               // a string, or an object of language tag -> string
	// kindLangObject is an object of language tag -> string, at least
	// one: CAEP 1.0 section 2 makes reason_admin and reason_user "JSON
	// object[s]" that "MUST contain one or more key/value pairs", so a
	// plain string, which RISC 1.0's untyped reasons allow (kindLangText),
	// would be signed into a CAEP SET that receivers reject.
	kindLangObject
)

// member is an event member the catalogue knows about.
type member struct {
	name     string
	kind     memberKind
	required bool
	enum     []string // for kindString: the allowed values, if enumerated
	// open marks an enumeration the specification extends by agreement
	// ("or any other ... supported mutually"): enum lists the registered
	// values, for messages, and any other non-empty string is allowed.
	open bool
	// nonEmpty, for kindObject, requires at least one member.
	nonEmpty bool
	path     string // "event." + name, precomputed so valid intents build no paths
}

type eventType struct {
	TypeInfo
	members     []member
	subjectRule subjectRule // set with SubjectFormats
}

// Enumerations from CAEP 1.0, RISC 1.0 and SSF 1.0.
var (
	credentialTypes  = []string{"password", "pin", "x509", "fido2-platform", "fido2-roaming", "fido-u2f", "verifiable-credential", "phone-voice", "phone-sms", "app"}
	changeTypes      = []string{"create", "revoke", "update", "delete"}
	complianceStatus = []string{"compliant", "not-compliant"}
	initiatingEntity = []string{"admin", "user", "policy", "system"}
	changeDirections = []string{"increase", "decrease"}
	riskLevels       = []string{"LOW", "MEDIUM", "HIGH"}
	disabledReasons  = []string{"hijacking", "bulk-account"}
	streamStatuses   = []string{"enabled", "paused", "disabled"}
	// credentialType is CAEP 1.0 section 3.3's credential_type, which RISC
	// 1.0 section 2.7 reuses: "one of the following strings, or any other
	// credential type supported mutually by the Transmitter and the
	// Receiver". Refusing an agreed type would refuse a valid event.
	credentialType    = member{name: "credential_type", kind: kindString, enum: credentialTypes, open: true, required: true}
	caepCommonMembers = []member{
		{name: "event_timestamp", kind: kindNumericDate},
		{name: "initiating_entity", kind: kindString, enum: initiatingEntity},
		{name: "reason_admin", kind: kindLangObject},
		{name: "reason_user", kind: kindLangObject},
	}
)

func caep(name string, members ...member) eventType {
	return eventType{
		TypeInfo: TypeInfo{URI: CAEPPrefix + name, Alias: "caep." + name, Profile: ProfileCAEP, SubjectRequired: true},
		members:  append(append([]member(nil), members...), caepCommonMembers...),
	}
}

func risc(name string, members ...member) eventType {
	return eventType{
		TypeInfo: TypeInfo{URI: RISCPrefix + name, Alias: "risc." + name, Profile: ProfileRISC, SubjectRequired: true},
		members:  members,
	}
}

func ssf(name string, members ...member) eventType {
	return eventType{
		TypeInfo: TypeInfo{URI: SSFPrefix + name, Alias: "ssf." + name, Profile: ProfileSSF, SubjectRequired: true},
		members:  members,
	}
}

func withSubjects(t eventType, rule subjectRule, formats ...string) eventType {
	t.SubjectFormats, t.subjectRule = formats, rule
	return t
}

func str(name string, enum ...string) member { return member{name: name, kind: kindString, enum: enum} }
func reqStr(name string, enum ...string) member {
	return member{name: name, kind: kindString, enum: enum, required: true}
}

// catalogue is every CAEP 1.0, RISC 1.0 and SSF 1.0 event type. Members the
// specifications mark OPTIONAL are still type-checked when present; members
// the catalogue does not name are allowed, since the specifications permit
// extension members.
var catalogue = func() []eventType {
	list := []eventType{
		// CAEP 1.0, section 3.
		caep("session-revoked"),
		// CAEP 1.0 section 3.2: claims holds "one or more claims with
		// their new value(s)".
		caep("token-claims-change", member{name: "claims", kind: kindObject, required: true, nonEmpty: true}),
		caep("credential-change",
			credentialType,
			reqStr("change_type", changeTypes...),
			str("friendly_name"), str("x509_issuer"), str("x509_serial"), str("fido2_aaguid")),
		caep("assurance-level-change",
			reqStr("namespace"), reqStr("current_level"), str("previous_level"),
			str("change_direction", changeDirections...)),
		caep("device-compliance-change",
			reqStr("previous_status", complianceStatus...), reqStr("current_status", complianceStatus...)),
		caep("session-established",
			str("fp_ua"), str("acr"), member{name: "amr", kind: kindStringArray}, str("ext_id")),
		caep("session-presented", str("fp_ua"), str("ext_id")),
		caep("risk-level-change",
			reqStr("principal"), reqStr("current_level", riskLevels...),
			str("previous_level", riskLevels...), str("risk_reason")),

		// RISC 1.0, section 2. account-disabled's reason and
		// identifier-changed's new-value are OPTIONAL in RISC 1.0, so they
		// are checked only when present.
		risc("account-credential-change-required"),
		risc("account-purged"),
		risc("account-disabled", str("reason", disabledReasons...)),
		risc("account-enabled"),
		// RISC 1.0 sections 2.5 and 2.6: "The subject type MUST be either
		// email or phone"; RFC 9493 names the phone format phone_number.
		withSubjects(risc("identifier-changed", str("new-value")),
			subjectRule{"the old email address or phone number", "RISC 1.0 section 2.5"}, "email", "phone_number"),
		withSubjects(risc("identifier-recycled"),
			subjectRule{"the recycled email address or phone number", "RISC 1.0 section 2.6"}, "email", "phone_number"),
		risc("credential-compromise",
			credentialType,
			member{name: "event_timestamp", kind: kindNumericDate},
			member{name: "reason_admin", kind: kindLangText},
			member{name: "reason_user", kind: kindLangText}),
		risc("opt-in"),
		risc("opt-out-initiated"),
		risc("opt-out-cancelled"),
		risc("opt-out-effective"),
		risc("recovery-activated"),
		risc("recovery-information-changed"),
		risc("sessions-revoked"),

		// SSF 1.0, section 8.1: stream events, about the stream itself,
		// whose sub_id "MUST be of format opaque" with the stream id as id.
		withSubjects(ssf("verification", str("state")),
			subjectRule{`the stream: {"format": "opaque", "id": "<stream id>"}`, "SSF 1.0 section 8.1.4.1"}, "opaque"),
		withSubjects(ssf("stream-updated", reqStr("status", streamStatuses...), str("reason")),
			subjectRule{`the stream: {"format": "opaque", "id": "<stream id>"}`, "SSF 1.0 section 8.1.5"}, "opaque"),
	}
	for i := range list {
		for j, m := range list[i].members {
			list[i].members[j].path = "event." + m.name
			if m.required {
				list[i].Required = append(list[i].Required, m.name)
			}
		}
		// RISC keeps sessions-revoked only for compatibility; CAEP's
		// session-revoked supersedes it.
		list[i].Deprecated = list[i].Alias == "risc.sessions-revoked"
	}
	return list
}()

// byName maps both aliases and URIs to their catalogue entry.
var byName = func() map[string]*eventType {
	m := make(map[string]*eventType, 2*len(catalogue))
	for i := range catalogue {
		m[catalogue[i].Alias] = &catalogue[i]
		m[catalogue[i].URI] = &catalogue[i]
	}
	return m
}()

// aliases lists the catalogue's aliases in catalogue order, the candidates
// for a mistyped alias.
var aliases = func() []string {
	out := make([]string, len(catalogue))
	for i, t := range catalogue {
		out[i] = t.Alias
	}
	return out
}()

// KnownTypes lists the catalogue in a stable order (CAEP, RISC, SSF), for
// documentation, configuration checks and tests in other packages. The
// returned slice is a copy.
func KnownTypes() []TypeInfo {
	out := make([]TypeInfo, len(catalogue))
	for i, t := range catalogue {
		out[i] = t.TypeInfo
		out[i].Required = append([]string(nil), t.Required...)
		out[i].SubjectFormats = append([]string(nil), t.SubjectFormats...)
	}
	return out
}

// ResolveType maps an alias or an event-type URI to the URI that goes into
// a SET. known is true for catalogue types and for the GOV.UK vocabulary.
// Any other absolute URI comes back unchanged with known false: it is a
// private type, usable only when Options.AllowPrivateTypes is set. A name
// that is neither an alias nor an absolute URI, or an unknown type in the
// reserved CAEP/RISC/SSF namespaces, yields ("", false).
func ResolveType(name string) (uri string, known bool) {
	if t, ok := byName[name]; ok {
		return t.URI, true
	}
	if !isAbsoluteURI(name) || reservedNamespace(name) {
		return "", false
	}
	if strings.HasPrefix(name, GOVUKPrefix) && len(name) > len(GOVUKPrefix) {
		return name, true
	}
	return name, false
}

// companionTypes are extra-event types that describe the main event rather
// than being events of their own: GOV.UK One Login puts eventMetadata next
// to the event it is about. A receiver that takes the main event takes
// these with it; any other extra event must pass the receiver's own event
// filter, as a main event would.
var companionTypes = map[string]bool{
	GOVUKPrefix + "eventMetadata": true,
}

// IsCompanionType reports whether uri is a companion extra-event type (see
// companionTypes): metadata sent beside a main event, which every receiver
// of the main event accepts.
func IsCompanionType(uri string) bool { return companionTypes[uri] }

// reservedNamespace reports whether uri lies in a namespace the OpenID
// specifications own. An unknown type there is almost surely a typo of a
// real one, so it is rejected rather than sent as a private type.
func reservedNamespace(uri string) bool {
	return strings.HasPrefix(uri, CAEPPrefix) || strings.HasPrefix(uri, RISCPrefix) || strings.HasPrefix(uri, SSFPrefix)
}

// closestAlias suggests the catalogue alias nearest to a mistyped one, or ""
// when none is close.
func closestAlias(name string) string {
	best, _ := suggest.Closest(name, aliases)
	return best
}

// sortedKeys returns a map's keys in order, for deterministic error lists.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
