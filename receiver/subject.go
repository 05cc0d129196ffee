package receiver

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// simpleFormats lists, per subject identifier format of RFC 9493 §3.2 and
// SSF 1.0 §3.5, the members it must have besides "format". RFC 9493 §3
// allows no others. "aliases" and "complex" are handled on their own.
var simpleFormats = map[string][]string{
	"account":           {"uri"},                    // RFC 9493 §3.2.1
	"email":             {"email"},                  // RFC 9493 §3.2.2
	"iss_sub":           {"iss", "sub"},             // RFC 9493 §3.2.3
	"opaque":            {"id"},                     // RFC 9493 §3.2.4
	"phone_number":      {"phone_number"},           // RFC 9493 §3.2.5
	"did":               {"url"},                    // RFC 9493 §3.2.6
	"uri":               {"uri"},                    // RFC 9493 §3.2.7
	"jwt_id":            {"iss", "jti"},             // SSF 1.0 §3.5.1
	"saml_assertion_id": {"issuer", "assertion_id"}, // SSF 1.0 §3.5.2
	"ip-addresses":      {"ip-addresses"},           // SSF 1.0 §3.5.3
}

// namedComplexMembers are the member names SSF 1.0 §3.3 lists for a
// complex subject. Other names are allowed too; these are only documented.
var namedComplexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

// eventSubjectProblem checks a "subject" inside an event. Besides an
// identifier it accepts the legacy RISC form {"subject_type": ...}, which
// GOV.UK's own documentation uses and RISC 1.0 §3.1 asks receivers to
// tolerate (it is a warning, subject_type_legacy).
func (v *verifier) eventSubjectProblem(x any) string {
	if legacySubject(x) {
		if s, _ := x.(map[string]any)["subject_type"].(string); s == "" {
			return "subject_type must be a non-empty string"
		}
		return ""
	}
	return v.identifierProblem(x, true, true)
}

// legacySubject reports a subject in the deprecated {"subject_type": ...}
// form, without "format".
func legacySubject(x any) bool {
	m, ok := x.(map[string]any)
	if !ok {
		return false
	}
	_, hasType := m["subject_type"]
	_, hasFormat := m["format"]
	return hasType && !hasFormat
}

// identifierProblem returns what is wrong with a subject identifier, or "".
// complexOK and aliasesOK say whether those two container formats may
// appear at this level: neither nests in itself, and a complex subject's
// members are simple subjects (SSF 1.0 §3.2, §3.3).
func (v *verifier) identifierProblem(x any, complexOK, aliasesOK bool) string {
	m, ok := x.(map[string]any)
	if !ok {
		return fmt.Sprintf("%s is not a JSON object", jsonText(x))
	}
	format, ok := m["format"].(string)
	if !ok || format == "" {
		return "format is missing or not a string (RFC 9493 §3)"
	}
	switch format {
	case "complex":
		if !complexOK {
			return "a complex subject cannot be a member of another subject (SSF 1.0 §3.3: members are simple subjects)"
		}
		n := 0
		for _, k := range sortedKeys(m) {
			if k == "format" {
				continue
			}
			n++
			if p := v.identifierProblem(m[k], false, true); p != "" {
				return fmt.Sprintf("member %s: %s", k, p)
			}
		}
		if n == 0 {
			return "a complex subject needs at least one member (SSF 1.0 §3.3), such as " + strings.Join(namedComplexMembers, ", ")
		}
		return ""
	case "aliases":
		if !aliasesOK {
			return "aliases must not nest inside aliases (RFC 9493 §3.2.8)"
		}
		ids, ok := m["identifiers"].([]any)
		if !ok || len(ids) == 0 {
			return "aliases needs a non-empty identifiers array (RFC 9493 §3.2.8)"
		}
		if extra := extraMembers(m, "identifiers"); extra != "" {
			return fmt.Sprintf("member %q is not defined for format aliases (RFC 9493 §3)", extra)
		}
		for i, id := range ids {
			if p := v.identifierProblem(id, false, false); p != "" {
				return fmt.Sprintf("identifiers[%d]: %s", i, p)
			}
		}
		return ""
	}
	want, known := simpleFormats[format]
	if !known {
		if slices.Contains(v.cfg.SubjectFormats, format) {
			// A proprietary format agreed with this receiver (SSF 1.0
			// §3.4): its members are the parties' business.
			return ""
		}
		return fmt.Sprintf("format %q is neither registered by RFC 9493, defined by SSF 1.0 §3.5, nor agreed with this receiver (--subject-format) (SSF 1.0 §3.4)", format)
	}
	if extra := extraMembers(m, want...); extra != "" {
		return fmt.Sprintf("member %q is not defined for format %s (RFC 9493 §3)", extra, format)
	}
	if format == "ip-addresses" {
		return ipAddressesProblem(m["ip-addresses"])
	}
	for _, k := range want {
		s, _ := m[k].(string)
		if s == "" {
			return fmt.Sprintf("format %s needs a non-empty string %q", format, k)
		}
		if p := memberValueProblem(format, s); p != "" {
			return p
		}
	}
	return ""
}

// memberValueProblem checks the value of a format's single string member
// where RFC 9493 constrains it.
func memberValueProblem(format, s string) string {
	switch format {
	case "account":
		if !strings.HasPrefix(s, "acct:") {
			return fmt.Sprintf("account uri %q is not an acct: URI (RFC 9493 §3.2.1, RFC 7565)", s)
		}
	case "email":
		at := strings.LastIndexByte(s, '@')
		if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Sprintf("email %q is not an email address (RFC 9493 §3.2.2)", s)
		}
	case "phone_number":
		// E.164: "+" and at most 15 digits. Spaces are tolerated as
		// visual separators, since SSF 1.0's own example has them.
		digits := strings.ReplaceAll(s, " ", "")
		if len(digits) < 2 || len(digits) > 16 || digits[0] != '+' || strings.Trim(digits[1:], "0123456789") != "" {
			return fmt.Sprintf("phone_number %q is not an E.164 number such as +12065550100 (RFC 9493 §3.2.5)", s)
		}
	case "did":
		if !strings.HasPrefix(s, "did:") {
			return fmt.Sprintf("did url %q is not a DID URL (RFC 9493 §3.2.6)", s)
		}
	case "uri":
		if u, err := url.Parse(s); err != nil || u.Scheme == "" {
			return fmt.Sprintf("uri %q is not an absolute URI (RFC 9493 §3.2.7)", s)
		}
	}
	return ""
}

func ipAddressesProblem(x any) string {
	a, ok := x.([]any)
	if !ok || len(a) == 0 {
		return "ip-addresses needs a non-empty ip-addresses array (SSF 1.0 §3.5.3)"
	}
	for i, e := range a {
		s, _ := e.(string)
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Sprintf("ip-addresses[%d] %s is not an IP address (SSF 1.0 §3.5.3, RFC 4001)", i, jsonText(e))
		}
	}
	return ""
}

// extraMembers returns, in order, the first member besides "format" and
// the allowed ones, or "".
func extraMembers(m map[string]any, allowed ...string) string {
	for _, k := range sortedKeys(m) {
		if k != "format" && !slices.Contains(allowed, k) {
			return k
		}
	}
	return ""
}
