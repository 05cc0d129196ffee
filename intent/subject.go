package intent

import (
	"net/netip"
	"sort"
	"strings"
)

// subjectFormat describes one RFC 9493 / SSF 1.0 subject identifier format.
// Every member of every format is required, and no other member is allowed
// besides "format" (RFC 9493 section 3: members not defined for a format
// must not be present).
type subjectFormat struct {
	members []string
	// check validates the string members beyond presence; it returns a
	// problem per member, keyed by member name.
	check func(m map[string]any, path string, p *problems)
}

// subjectFormats is the catalogue of simple identifier formats. "aliases"
// and "ip-addresses" carry arrays and are handled beside the strings.
var subjectFormats = map[string]subjectFormat{
	"account":           {members: []string{"uri"}, check: checkAccount},
	"email":             {members: []string{"email"}, check: checkEmail},
	"phone_number":      {members: []string{"phone_number"}, check: checkPhone},
	"iss_sub":           {members: []string{"iss", "sub"}},
	"opaque":            {members: []string{"id"}},
	"aliases":           {members: []string{"identifiers"}},
	"did":               {members: []string{"url"}, check: checkDID},
	"uri":               {members: []string{"uri"}, check: checkURIMember},
	"jwt_id":            {members: []string{"iss", "jti"}},
	"saml_assertion_id": {members: []string{"issuer", "assertion_id"}},
	"ip-addresses":      {members: []string{"ip-addresses"}},
}

// A note on sources, checked against the final texts: RFC 9493 section 3.2
// defines account, email, iss_sub, opaque, phone_number, did, uri and
// aliases; SSF 1.0 section 3.5 adds jwt_id (iss, jti), saml_assertion_id
// (issuer, assertion_id) and ip-addresses (an array of RFC 4001 address
// strings). RFC 9493 section 3 forbids members a format does not describe.
// Proprietary formats, which SSF 1.0 section 3.4 allows "agreed to between
// parties", are refused: setrelay cannot know what each receiver agreed to,
// and a typo in a format name would otherwise be signed and sent.

// formatNames is the list shown in errors.
const formatNames = "account, email, phone_number, iss_sub, opaque, aliases, did, uri, jwt_id, saml_assertion_id, ip-addresses"

// complexMembers are the member names SSF 1.0 section 3.3 defines for a
// complex subject. The section also lets a complex subject use other member
// names, so these are the documented ones, not the only ones allowed.
var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

func isComplexMember(k string) bool {
	for _, c := range complexMembers {
		if c == k {
			return true
		}
	}
	return false
}

// formatComplex is the format of an SSF 1.0 complex subject (section 3.3).
const formatComplex = "complex"

// ValidateSubject checks a subject on its own, by the rules an intent's
// subject is checked with, so that what a receiver may subscribe to (the
// SSF add and remove subject endpoints) is exactly what an event may carry.
// The error, if any, is a *ValidationError listing every problem.
func ValidateSubject(s map[string]any) error {
	var p problems
	validateSubject(s, "subject", &p)
	return p.err()
}

// validateSubject checks the intent's subject: a simple identifier with a
// format, a complex subject ("format": "complex"), or the legacy RISC form
// that the seed page uses ("subject_type": "iss-sub").
func validateSubject(s map[string]any, path string, p *problems) {
	if fv, ok := s["format"]; ok {
		if f, _ := fv.(string); f == formatComplex {
			validateComplex(s, path, p)
			return
		}
		validateIdentifier(s, path, true, p)
		return
	}
	if st, ok := s["subject_type"]; ok {
		validateLegacySubject(st, s, path, p)
		return
	}
	for k := range s {
		if isComplexMember(k) {
			// The SSF drafts told a complex subject by the absence of
			// "format"; the final text (section 3.3) gives it
			// "format": "complex", and receivers written to it look for
			// that value, so the draft form is refused rather than
			// signed as something they may misread.
			p.add(join(path, "format"), `required: a complex subject needs "format": "complex" (SSF 1.0 section 3.3); add it beside `+
				strings.Join(sortedMemberNames(s), ", "))
			return
		}
	}
	p.add(join(path, "format"), "required: a subject identifier needs a format ("+formatNames+
		`), or "format": "complex" with members such as `+strings.Join(complexMembers, ", ")+" for a complex subject")
}

// sortedMemberNames returns the member names of m in sorted order, at most
// eight of them, for an error message.
func sortedMemberNames(m map[string]any) []string {
	names := unknownKeys(m, func(string) bool { return false })
	if len(names) > 8 {
		names = append(names[:8:8], "...")
	}
	return names
}

// validateLegacySubject accepts the RISC draft form {"subject_type":
// "iss-sub", "iss": ..., "sub": ...}, deprecated by RISC 1.0 in favour of
// {"format": "iss_sub", ...}. It is accepted only so the GOV.UK seed page's
// example SET can be reproduced byte for byte; new producers should send
// "format". Other legacy subject types are refused, because no receiver
// setrelay targets expects them.
func validateLegacySubject(st any, s map[string]any, path string, p *problems) {
	if v, ok := st.(string); !ok || v != "iss-sub" {
		p.add(join(path, "subject_type"), `only the legacy value "iss-sub" is accepted; use "format" (`+formatNames+`) instead`)
		return
	}
	for _, k := range unknownKeys(s, func(k string) bool { return k == "subject_type" || k == "iss" || k == "sub" }) {
		p.add(join(path, k), `unknown member for subject_type "iss-sub"; allowed: iss, sub`)
	}
	requireString(s, "iss", path, p)
	requireString(s, "sub", path, p)
}

// validateComplex checks an SSF 1.0 complex subject (section 3.3): "format":
// "complex" and one or more members, each a simple subject identifier. The
// seven names of section 3.3 are the usual ones; section 3.3 also allows
// others ("Additional Subject Member names MAY be used"), so any name is
// accepted whose value is a valid identifier. A name appears at most once:
// Decode refuses repeated member names everywhere. A member may not itself
// be a complex subject, because section 3.3 makes every member a simple
// subject.
func validateComplex(s map[string]any, path string, p *problems) {
	if len(s) == 1 {
		p.add(path, `a complex subject needs at least one member besides "format", such as `+strings.Join(complexMembers, ", ")+
			` (SSF 1.0 section 3.3)`)
		return
	}
	for _, k := range unknownKeys(s, func(k string) bool { return k == "format" }) {
		mp := join(path, k)
		if k == "" {
			p.add(mp, "a complex subject member needs a name, such as "+strings.Join(complexMembers, ", "))
			continue
		}
		v := s[k]
		id, ok := asMap(v)
		if !ok {
			p.add(mp, "must be a subject identifier object like {\"format\": \"opaque\", \"id\": \"...\"}, got "+jsonKind(v))
			continue
		}
		if f, _ := id["format"].(string); f == formatComplex {
			p.add(join(mp, "format"), `a complex subject's members are simple subject identifiers; "complex" cannot nest (SSF 1.0 section 3.3)`)
			continue
		}
		validateIdentifier(id, mp, true, p)
	}
}

// validateIdentifier checks one simple subject identifier. allowAliases is
// false inside an aliases identifier, which must not nest.
func validateIdentifier(id map[string]any, path string, allowAliases bool, p *problems) {
	fv, ok := id["format"]
	if !ok {
		p.add(join(path, "format"), "required; one of "+formatNames)
		return
	}
	format, ok := fv.(string)
	if !ok {
		p.add(join(path, "format"), "must be a string, one of "+formatNames+"; got "+jsonKind(fv))
		return
	}
	f, ok := subjectFormats[format]
	if !ok {
		hint := ""
		if isComplexMember(format) {
			hint = `; for a complex subject use "format": "complex" with a ` + quote(format) + ` member`
		}
		p.add(join(path, "format"), "unknown format "+quote(format)+"; use one of "+formatNames+hint)
		return
	}
	if format == "aliases" && !allowAliases {
		p.add(join(path, "format"), `"aliases" identifiers must not nest`)
		return
	}
	for _, k := range unknownKeys(id, func(k string) bool { return k == "format" || contains(f.members, k) }) {
		p.add(join(path, k), "unknown member for format "+quote(format)+"; allowed: format, "+strings.Join(f.members, ", "))
	}
	switch format {
	case "aliases":
		validateAliases(id, path, p)
		return
	case "ip-addresses":
		validateIPs(id, path, p)
		return
	}
	ok = true
	for _, m := range f.members {
		ok = requireString(id, m, path, p) && ok
	}
	if ok && f.check != nil {
		f.check(id, path, p)
	}
}

func validateAliases(id map[string]any, path string, p *problems) {
	mp := join(path, "identifiers")
	v, present := id["identifiers"]
	if !present {
		p.add(mp, "required: a non-empty array of subject identifiers")
		return
	}
	list, ok := asList(v)
	if !ok || len(list) == 0 {
		p.add(mp, "must be a non-empty array of subject identifiers, got "+describe(v))
		return
	}
	for i, e := range list {
		ip := index(mp, i)
		m, ok := asMap(e)
		if !ok {
			p.add(ip, "must be a subject identifier object, got "+jsonKind(e))
			continue
		}
		validateIdentifier(m, ip, false, p)
	}
}

func validateIPs(id map[string]any, path string, p *problems) {
	mp := join(path, "ip-addresses")
	v, present := id["ip-addresses"]
	if !present {
		p.add(mp, `required: a non-empty array of IP addresses, e.g. ["192.0.2.1", "2001:db8::1"]`)
		return
	}
	list, ok := asList(v)
	if !ok || len(list) == 0 {
		p.add(mp, "must be a non-empty array of IP addresses, got "+describe(v))
		return
	}
	for i, e := range list {
		s, ok := e.(string)
		if !ok {
			p.add(index(mp, i), "must be an IP address string, got "+jsonKind(e))
			continue
		}
		if a, err := netip.ParseAddr(s); err != nil || a.Zone() != "" {
			p.add(index(mp, i), quote(s)+` is not an IPv4 or IPv6 address (e.g. "192.0.2.1", "2001:db8::1"; no zone)`)
		}
	}
}

// requireString reports a missing, non-string or empty member and says
// whether the member is usable.
func requireString(m map[string]any, name, path string, p *problems) bool {
	v, ok := m[name]
	if !ok {
		p.add(join(path, name), "required")
		return false
	}
	s, ok := v.(string)
	if !ok {
		p.add(join(path, name), "must be a string, got "+jsonKind(v))
		return false
	}
	if s == "" {
		p.add(join(path, name), "must not be empty")
		return false
	}
	return true
}

func checkEmail(m map[string]any, path string, p *problems) {
	if s := m["email"].(string); !validEmail(s) {
		p.add(join(path, "email"), quote(s)+` is not an email address like "user@example.com"`)
	}
}

// validEmail is deliberately simple (one "@", both sides non-empty, no
// white space): RFC 5322 allows far more than receivers match on, and the
// JSON Schema uses the same rule so both agree.
func validEmail(s string) bool {
	at := strings.IndexByte(s, '@')
	return at > 0 && at < len(s)-1 && strings.IndexByte(s[at+1:], '@') < 0 && !hasSpaceOrControl(s)
}

func checkAccount(m map[string]any, path string, p *problems) {
	s := m["uri"].(string)
	if !strings.HasPrefix(s, "acct:") || !validEmail(s[len("acct:"):]) {
		p.add(join(path, "uri"), quote(s)+` is not an acct: URI (RFC 7565) like "acct:user@example.com"`)
	}
}

func checkPhone(m map[string]any, path string, p *problems) {
	s := m["phone_number"].(string)
	ok := len(s) >= 3 && len(s) <= 16 && s[0] == '+' && s[1] >= '1' && s[1] <= '9'
	for i := 2; ok && i < len(s); i++ {
		ok = s[i] >= '0' && s[i] <= '9'
	}
	if !ok {
		p.add(join(path, "phone_number"), quote(s)+` is not an E.164 number like "+12065550100" ("+", then up to 15 digits, no spaces or punctuation)`)
	}
}

func checkDID(m map[string]any, path string, p *problems) {
	s := m["url"].(string)
	rest, ok := strings.CutPrefix(s, "did:")
	method, id, ok2 := strings.Cut(rest, ":")
	valid := ok && ok2 && method != "" && id != "" && !hasSpaceOrControl(s)
	for i := 0; valid && i < len(method); i++ {
		c := method[i]
		valid = c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
	}
	if !valid {
		p.add(join(path, "url"), quote(s)+` is not a DID URL like "did:example:123456"`)
	}
}

func checkURIMember(m map[string]any, path string, p *problems) {
	if s := m["uri"].(string); !isAbsoluteURI(s) {
		p.add(join(path, "uri"), quote(s)+` is not an absolute URI like "https://example.com/users/123" or "urn:fdc:gov.uk:2022:abc"`)
	}
}

// unknownKeys returns, sorted, the keys of m that known rejects. It
// allocates nothing when every key is known, the common case.
func unknownKeys(m map[string]any, known func(string) bool) []string {
	var out []string
	for k := range m {
		if !known(k) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
