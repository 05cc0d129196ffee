package intent

import (
	"strconv"
	"strings"
)

// FieldError is one problem with one field of an intent.
type FieldError struct {
	// Field is the JSON path of the offending member, for example
	// "subject.email" or "receivers[2]". It is empty for problems with the
	// document as a whole (size, encoding, syntax).
	Field string `json:"field"`
	// Problem says what is wrong and, where it can, what would be right.
	Problem string `json:"problem"`
}

// String renders the problem as "field: problem".
func (e FieldError) String() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// ValidationError carries every problem found in an intent, so a producer can
// fix them all in one round trip instead of one per attempt.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
}

// Error lists every problem on one line, separated by "; ", because the
// message ends up in logs, dead letters and CLI output where one line per
// intent keeps things greppable.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid intent: ")
	if len(e.Errors) > 1 {
		b.WriteString(strconv.Itoa(len(e.Errors)))
		b.WriteString(" problems: ")
	}
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.String())
	}
	return b.String()
}

// Problems returns each problem as "field: problem", ready for printing one
// per line (the CLI and the dead-letter record use it).
func (e *ValidationError) Problems() []string {
	out := make([]string, len(e.Errors))
	for i, fe := range e.Errors {
		out[i] = fe.String()
	}
	return out
}

// problems collects FieldErrors while validating.
type problems struct {
	list []FieldError
}

func (p *problems) add(field, problem string) {
	p.list = append(p.list, FieldError{Field: field, Problem: problem})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Errors: p.list}
}

// join builds a JSON path from a parent path and a member name. Names that
// are not plain identifiers (URIs in extra_events, say) are written in
// bracket form, `extra_events["https://example.com/e"]`, so the path stays
// unambiguous.
func join(parent, member string) string {
	if !plainName(member) {
		return parent + "[" + strconv.Quote(member) + "]"
	}
	if parent == "" {
		return member
	}
	return parent + "." + member
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// index builds a JSON path for an array element.
func index(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}
