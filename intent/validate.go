package intent

import (
	"encoding/json"
	"math"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on free-text fields. They keep one intent from bloating every SET
// and every dead letter made from it.
const (
	MaxIDLength       = 128 // bytes; id is printable ASCII
	MaxTxnLength      = 256 // characters
	MaxReceiverLength = 128 // characters
	// MaxTypeLength bounds an event-type URI (type, extra_events keys).
	// Catalogue URIs are under 100 bytes; a private or GOV.UK type is
	// producer text that becomes a metric label and a log field.
	MaxTypeLength = 512 // bytes
)

// maxNumericDate is 9999-12-31T23:59:59Z, the last second occurred_at can
// express, as a NumericDate.
const maxNumericDate = 253402300799

// Options tune validation to the relay's configuration.
type Options struct {
	// AllowPrivateTypes accepts any absolute event-type URI outside the
	// CAEP/RISC/SSF catalogue. The GOV.UK vocabulary is always accepted.
	AllowPrivateTypes bool
}

// fields is the set of top-level members, in the order problems are
// reported.
var fields = []string{"id", "type", "subject", "event", "occurred_at", "txn", "receivers", "extra_events"}

const fieldList = "id, type, subject, event, occurred_at, txn, receivers, extra_events"

// skipSet marks top-level fields whose JSON type was already wrong, so
// Validate does not pile "required" on top of "must be an object".
type skipSet uint16

func (s skipSet) has(f string) bool {
	for i, n := range fields {
		if n == f {
			return s&(1<<i) != 0
		}
	}
	return false
}

func (s *skipSet) add(f string) {
	for i, n := range fields {
		if n == f {
			*s |= 1 << i
		}
	}
}

// WantsSubject reports whether the intent's type requires a subject. Every
// type does: SSF 1.0 gives every SET a subject, and for its stream events
// (verification, stream-updated) that subject is the stream (sections
// 8.1.4.1 and 8.1.5), so none may do without one.
func (in *Intent) WantsSubject() bool {
	uri := in.EventType
	if uri == "" {
		uri, _ = ResolveType(in.Type)
	}
	if t, ok := byName[uri]; ok {
		return t.SubjectRequired
	}
	return true
}

// Validate checks an intent built in Go (or re-checks a decoded one) and
// fills EventType. The error, if any, is a *ValidationError listing every
// problem.
func (in *Intent) Validate(opts Options) error {
	var p problems
	in.validate(opts, 0, &p)
	// Decode checks numbers as it parses; an intent built in Go gets the
	// same verdict here.
	goNumbers(in.Subject, "subject", &p)
	goNumbers(in.Event, "event", &p)
	for k, ev := range in.ExtraEvents {
		goNumbers(ev, join("extra_events", k), &p)
	}
	return p.err()
}

func (in *Intent) validate(opts Options, skip skipSet, p *problems) {
	in.EventType = ""
	if !skip.has("id") {
		validateID(in.ID, p)
	}
	var et *eventType
	if !skip.has("type") {
		et = in.resolveType(opts, p)
	}
	if !skip.has("subject") {
		switch {
		case in.Subject != nil:
			validateSubject(in.Subject, "subject", p)
			if et != nil && len(et.SubjectFormats) > 0 {
				checkSubjectFormat(et, in.Subject, p)
			}
		case et == nil && in.EventType == "":
			// The type is broken; whether a subject is needed is unknown.
		case et == nil || et.SubjectRequired:
			p.add("subject", `required for this event type: a subject identifier such as {"format": "email", "email": "user@example.com"}`)
		}
	}
	if !skip.has("event") {
		switch {
		case et != nil:
			validateEvent(et, in.Event, "event", p)
		case in.EventType != "":
			// A GOV.UK or private event has free-form members, but not
			// its own subject, just as its extra_events may not: the SET
			// would carry two subjects (sub_id and the event's), or
			// could not be built for a receiver that wants the subject
			// placed in the event.
			if _, ok := in.Event["subject"]; ok {
				p.add("event.subject", "not allowed: put the subject in the top-level subject; setrelay places it per receiver")
			}
		}
	}
	if !skip.has("occurred_at") && in.OccurredAt != nil && (in.OccurredAt.Year() < 0 || in.OccurredAt.Year() > 9999) {
		// RFC 3339 has four-digit years, and time.Time refuses to marshal others.
		p.add("occurred_at", "year must be between 0000 and 9999")
	}
	if !skip.has("txn") && in.Txn != "" && utf8.RuneCountInString(in.Txn) > MaxTxnLength {
		p.add("txn", "longer than "+strconv.Itoa(MaxTxnLength)+" characters")
	}
	if !skip.has("receivers") {
		validateReceivers(in.Receivers, p)
	}
	if !skip.has("extra_events") {
		for _, k := range sortedKeys(in.ExtraEvents) {
			validateExtra(k, in.ExtraEvents[k], in.EventType, in.Subject, opts, p)
		}
	}
}

// checkSubjectFormat refuses a subject whose format the event type's
// specification does not allow, such as an iss_sub subject for RISC's
// identifier-changed, which must name the old email or phone number, or
// anything but an opaque stream id for an SSF stream event. A complex or
// legacy subject has no such format, so it is refused too.
func checkSubjectFormat(et *eventType, s map[string]any, p *problems) {
	format, _ := s["format"].(string)
	if contains(et.SubjectFormats, format) {
		return
	}
	// A missing or unknown format is already reported by validateSubject.
	_, legacy := s["subject_type"]
	if _, known := subjectFormats[format]; !known && format != formatComplex && !legacy {
		return
	}
	got := "no format"
	if format != "" {
		got = "format " + quote(format)
	}
	p.add("subject.format", et.Alias+" needs a subject of format "+strings.Join(et.SubjectFormats, " or ")+
		" naming "+et.subjectRule.names+" ("+et.subjectRule.section+"); got "+got)
}

// validateExtra checks one extra_events entry like a main event: its key is
// resolved as a type (a catalogue type has its members checked; an unknown
// type in the OpenID namespaces is a typo; a private type needs private
// types enabled), and it may not carry a subject, which setrelay places per
// receiver; a catalogue type's subject rule applies to the top-level
// subject, which the extra event shares. Which receivers get it is decided per receiver when the SET is
// built (see AcceptsExtra).
func validateExtra(k string, ev map[string]any, mainType string, subject map[string]any, opts Options, p *problems) {
	path := join("extra_events", k)
	switch {
	case len(k) > MaxTypeLength:
		p.add(path, "key longer than "+strconv.Itoa(MaxTypeLength)+" bytes ("+strconv.Itoa(len(k))+"): event-type URIs are short")
		return
	case !isAbsoluteURI(k):
		msg := "key must be an absolute event-type URI like " + quote(GOVUKPrefix+"eventMetadata")
		if t, ok := byName[k]; ok {
			msg += "; for " + quote(k) + " use " + quote(t.URI)
		}
		p.add(path, msg)
		return
	case mainType != "" && k == mainType:
		p.add(path, "repeats the main event type; put its members in event instead")
		return
	case ev == nil:
		p.add(path, "must be an object (use {} for no members)")
		return
	}
	if et, ok := byName[k]; ok {
		validateEvent(et, ev, path, p)
		// The extra event is about the SET's subject too.
		if len(et.SubjectFormats) > 0 && subject != nil {
			checkSubjectFormat(et, subject, p)
		}
		return
	}
	switch {
	case reservedNamespace(k):
		p.add(path, quote(k)+" is not a CAEP 1.0, RISC 1.0 or SSF 1.0 event type; check the spelling")
		return
	case isGOVUK(k):
	case !opts.AllowPrivateTypes:
		p.add(path, quote(k)+" is a private event type, and private types are not enabled; use a CAEP/RISC/SSF or GOV.UK type or enable private types")
		return
	}
	if _, ok := ev["subject"]; ok {
		p.add(join(path, "subject"), "not allowed: the SET's subject is the top-level subject, placed per receiver")
	}
}

// isGOVUK reports whether uri is in GOV.UK One Login's event vocabulary.
func isGOVUK(uri string) bool {
	return strings.HasPrefix(uri, GOVUKPrefix) && len(uri) > len(GOVUKPrefix)
}

func validateID(id string, p *problems) {
	if id == "" {
		p.add("id", "required: the producer's idempotency key, 1 to 128 printable ASCII characters")
		return
	}
	if len(id) > MaxIDLength {
		p.add("id", "longer than "+strconv.Itoa(MaxIDLength)+" characters")
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c >= 0x7f {
			p.add("id", "must be printable ASCII without spaces (it becomes the Nats-Msg-Id); bad character at byte "+strconv.Itoa(i))
			return
		}
	}
}

// resolveType fills EventType and returns the catalogue entry, if any.
func (in *Intent) resolveType(opts Options, p *problems) *eventType {
	name := in.Type
	if name == "" {
		p.add("type", `required: an alias like "caep.session-revoked" or an event-type URI`)
		return nil
	}
	if t, ok := byName[name]; ok {
		in.EventType = t.URI
		return t
	}
	if len(name) > MaxTypeLength {
		p.add("type", "longer than "+strconv.Itoa(MaxTypeLength)+" bytes ("+strconv.Itoa(len(name))+"): event-type URIs are short")
		return nil
	}
	if !strings.Contains(name, ":") {
		msg := "unknown event type alias " + quote(name) + `; aliases look like "caep.session-revoked", "risc.account-disabled", "ssf.verification"`
		if s := closestAlias(name); s != "" {
			msg += "; did you mean " + quote(s) + "?"
		}
		p.add("type", msg)
		return nil
	}
	if !isAbsoluteURI(name) {
		p.add("type", quote(name)+" is not an absolute URI")
		return nil
	}
	if reservedNamespace(name) {
		p.add("type", quote(name)+" is not a CAEP 1.0, RISC 1.0 or SSF 1.0 event type; check the spelling")
		return nil
	}
	if isGOVUK(name) {
		in.EventType = name
		return nil
	}
	if !opts.AllowPrivateTypes {
		p.add("type", quote(name)+" is a private event type, and private types are not enabled; use a CAEP/RISC/SSF type or enable private types")
		return nil
	}
	in.EventType = name
	return nil
}

// validateEvent checks an event object of a catalogue type at path
// ("event", or an extra_events entry).
func validateEvent(et *eventType, ev map[string]any, path string, p *problems) {
	if _, ok := ev["subject"]; ok {
		p.add(join(path, "subject"), "not allowed: put the subject in the top-level subject; setrelay places it per receiver")
	}
	for _, m := range et.members {
		mp := m.path // precomputed for the main event, so valid intents build no paths
		if path != "event" {
			mp = join(path, m.name)
		}
		v, ok := ev[m.name]
		if !ok {
			if m.required {
				p.add(mp, "required for "+et.Alias+describeKind(m))
			}
			continue
		}
		checkMember(m, v, mp, p)
	}
}

func describeKind(m member) string {
	switch {
	case len(m.enum) > 0 && m.open:
		return "; one of " + strings.Join(m.enum, ", ") + ", or another type agreed with the receivers"
	case len(m.enum) > 0:
		return "; one of " + strings.Join(m.enum, ", ")
	case m.kind == kindObject:
		return "; an object"
	}
	return "; a string"
}

func checkMember(m member, v any, path string, p *problems) {
	switch m.kind {
	case kindString:
		s, ok := v.(string)
		if !ok {
			p.add(path, "must be a string"+enumHint(m.enum)+", got "+jsonKind(v))
			return
		}
		if len(m.enum) > 0 && !m.open && !contains(m.enum, s) {
			p.add(path, quote(s)+" is not allowed; use one of "+strings.Join(m.enum, ", "))
		} else if m.required && s == "" {
			p.add(path, "must not be empty")
		}
	case kindObject:
		if o, ok := asMap(v); !ok {
			p.add(path, "must be an object, got "+jsonKind(v))
		} else if m.nonEmpty && len(o) == 0 {
			p.add(path, `must hold one or more claims with their new values, like {"role": "ro-admin"} (CAEP 1.0 section 3.2)`)
		}
	case kindNumericDate:
		switch f, ok := asNumber(v); {
		case !ok || f < 0 || f != math.Trunc(f):
			p.add(path, "must be a NumericDate: a non-negative integer number of seconds since 1970, got "+describe(v))
		case f > maxNumericDate:
			// Bounded like occurred_at. Beyond it lie milliseconds sent
			// for seconds (year 50000 and later for today's dates) and
			// values that overflow a receiver's 64-bit integer claims.
			p.add(path, "must be seconds since 1970 up to year 9999 ("+strconv.FormatInt(maxNumericDate, 10)+
				"), got "+describe(v)+"; send seconds, not milliseconds")
		}
	case kindStringArray:
		list, ok := asList(v)
		if !ok {
			p.add(path, "must be an array of strings, got "+jsonKind(v))
			return
		}
		for i, e := range list {
			if _, ok := e.(string); !ok {
				p.add(index(path, i), "must be a string, got "+jsonKind(e))
			}
		}
	case kindLangText, kindLangObject:
		switch t := v.(type) {
		case string:
			if m.kind == kindLangObject {
				p.add(path, `must be an object of language tag to text, like {"en": "<the text>"} (CAEP 1.0 section 2), not a plain string`)
			}
		case map[string]any:
			if len(t) == 0 {
				p.add(path, `must not be an empty object; use {"en": "text"}`)
			}
			for _, k := range sortedKeys(t) {
				if !validLangTag(k) {
					p.add(join(path, k), quote(k)+` is not a language tag like "en" or "en-GB"`)
				} else if _, ok := t[k].(string); !ok {
					p.add(join(path, k), "must be a string, got "+jsonKind(t[k]))
				}
			}
		default:
			want := "a string or an object"
			if m.kind == kindLangObject {
				want = "an object"
			}
			p.add(path, `must be `+want+` of language tag to text, like {"en": "text"}; got `+jsonKind(v))
		}
	}
}

func enumHint(enum []string) string {
	if len(enum) == 0 {
		return ""
	}
	return " (one of " + strings.Join(enum, ", ") + ")"
}

// validLangTag is a shallow BCP 47 check (RFC 5646 subtags of 1 to 8
// letters or digits, the first all letters); the schema uses the same rule.
func validLangTag(s string) bool {
	n, first := 0, true
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '-' {
			if n < 1 || n > 8 {
				return false
			}
			n, first = 0, false
			continue
		}
		c := s[i]
		letter := c|0x20 >= 'a' && c|0x20 <= 'z'
		digit := c >= '0' && c <= '9'
		if !letter && (first || !digit) {
			return false
		}
		n++
	}
	return true
}

func validateReceivers(rs []string, p *problems) {
	if rs == nil {
		return
	}
	if len(rs) == 0 {
		p.add("receivers", "must not be empty; omit it to send to every receiver that wants this type")
		return
	}
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		switch {
		case r == "":
			p.add(index("receivers", i), "must not be empty")
		case utf8.RuneCountInString(r) > MaxReceiverLength:
			p.add(index("receivers", i), "longer than "+strconv.Itoa(MaxReceiverLength)+" characters")
		}
		if j, dup := seen[r]; dup {
			p.add(index("receivers", i), "duplicate of receivers["+strconv.Itoa(j)+"]")
		} else {
			seen[r] = i
		}
	}
}

// isAbsoluteURI reports whether s is an absolute URI: an RFC 3986 scheme,
// a colon, then at least one character, with no white space or control
// characters, and parseable by net/url.
func isAbsoluteURI(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon < 1 || colon == len(s)-1 {
		return false
	}
	for i := 0; i < colon; i++ {
		c := s[i]
		alpha := c|0x20 >= 'a' && c|0x20 <= 'z'
		if !alpha && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	if hasSpaceOrControl(s) {
		return false
	}
	_, err := url.Parse(s)
	return err == nil
}

func hasSpaceOrControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// quote renders a value for an error message, bounded so a huge bad value
// does not become a huge error.
func quote(s string) string {
	if len(s) > 80 {
		cut := 80
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return strconv.Quote(s)
}

// jsonKind names the JSON type of a decoded (or Go-built) value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64, float32, int, int64, int32, uint, uint64, uint32, json.Number:
		return "number"
	case []any, []string, []map[string]any:
		return "array"
	case map[string]any, map[string]string:
		return "object"
	}
	return "unsupported Go type"
}

// describe is jsonKind plus the value for scalars, for messages like
// "got number 1.5".
func describe(v any) string {
	switch t := v.(type) {
	case string:
		return "string " + quote(t)
	case float64:
		return "number " + strconv.FormatFloat(t, 'g', -1, 64)
	case []any:
		if len(t) == 0 {
			return "an empty array"
		}
	case []string:
		if len(t) == 0 {
			return "an empty array"
		}
	}
	return jsonKind(v)
}

// asList accepts the array shapes an intent built in Go may hold.
func asList(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case []string:
		out := make([]any, len(t))
		for i, s := range t {
			out[i] = s
		}
		return out, true
	case []map[string]any:
		out := make([]any, len(t))
		for i, m := range t {
			out[i] = m
		}
		return out, true
	}
	return nil, false
}

// asNumber accepts the numeric types an intent built in Go may hold.
func asNumber(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case float32:
		return float64(t), true
	case int:
		return float64(t), true
	case int64:
		return float64(t), true
	case int32:
		return float64(t), true
	case uint:
		return float64(t), true
	case uint64:
		return float64(t), true
	case uint32:
		return float64(t), true
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	}
	return 0, false
}

// asMap accepts the object shapes an intent built in Go may hold.
func asMap(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[string]any:
		return t, true
	case map[string]string:
		out := make(map[string]any, len(t))
		for k, s := range t {
			out[k] = s
		}
		return out, true
	}
	return nil, false
}
