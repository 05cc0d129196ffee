package intent

import "encoding/json"

// This file is the one definition of "the same subject": SSF stream
// subject matching (package ssf) and per-subject ordering (package queue)
// both compare subjects in this normalised form.

// IsComplexSubject reports whether subject is a complex subject:
// "format": "complex" (SSF 1.0 §3.3), or, as setrelay's producers may write
// it, no format and only subject-identifier members (user, tenant ...).
func IsComplexSubject(subject map[string]any) bool {
	f, hasFormat := subject["format"]
	if hasFormat {
		return f == formatComplex
	}
	return len(subject) > 0
}

// SubjectMembers are a complex subject's members without "format": both
// complex forms compare equal through them.
func SubjectMembers(subject map[string]any) map[string]any {
	out := make(map[string]any, len(subject))
	for k, v := range subject {
		if k != "format" {
			out[k] = v
		}
	}
	return out
}

// NormaliseSubject is the form subjects are compared in. A simple subject
// is itself: its format plus that format's identifying members (RFC 9493
// §3 allows no others, and Validate refuses them). A complex subject is its
// members without "format", so {"format":"complex","user":U} and {"user":U}
// are the same subject; every member counts, so {"user":U} and
// {"user":U,"tenant":T} are different subjects. Member values are compared
// exactly (no case folding): an identifier is what the producer sent.
func NormaliseSubject(subject map[string]any) map[string]any {
	if IsComplexSubject(subject) {
		return SubjectMembers(subject)
	}
	return subject
}

// SubjectKey is the canonical JSON of the normalised subject: encoding/json
// writes object members sorted at every level, so equal subjects give
// equal bytes. An intent without a subject has the key "null".
func SubjectKey(subject map[string]any) []byte {
	var v any
	if len(subject) > 0 {
		v = NormaliseSubject(subject)
	}
	b, _ := json.Marshal(v)
	return b
}
