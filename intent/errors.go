package intent

import (
	"strconv"
	"strings"
	"unicode/utf8"
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

// Bounds on what a ValidationError holds. A hostile or broken intent can
// have one problem per few bytes (65,534 bytes of "receivers":[0,0,...]
// gives 32,718), and the error ends up in logs, dead letters and CLI
// output, so it is capped: the first MaxProblems problems are listed, each
// at most MaxFieldLength + MaxProblemLength bytes, and the rest counted.
const (
	// MaxProblems is how many problems a ValidationError lists.
	MaxProblems = 50
	// MaxFieldLength bounds a FieldError's Field (a path through member
	// names the producer chose, which may be long).
	MaxFieldLength = 200
	// MaxProblemLength bounds a FieldError's Problem.
	MaxProblemLength = 400
	// MaxErrorLength bounds the length of ValidationError.Error().
	MaxErrorLength = 64 + MaxProblems*(MaxFieldLength+MaxProblemLength+4) + 64
)

// ValidationError carries the problems found in an intent, so a producer can
// fix them all in one round trip instead of one per attempt. At most
// MaxProblems are listed; Omitted counts the others.
type ValidationError struct {
	Errors []FieldError `json:"errors"`
	// Omitted is how many further problems were found but not listed.
	Omitted int `json:"omitted,omitempty"`
	// ID is the intent's id when it parsed and is itself valid, so that a
	// dead letter or a log line can name the intent; "" otherwise.
	ID string `json:"id,omitempty"`
}

// Total is the number of problems found, listed or not.
func (e *ValidationError) Total() int { return len(e.Errors) + e.Omitted }

// Error lists the problems on one line, separated by "; ", because the
// message ends up in logs, dead letters and CLI output where one line per
// intent keeps things greppable. It is at most MaxErrorLength bytes.
func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid intent: ")
	if n := e.Total(); n > 1 {
		b.WriteString(strconv.Itoa(n))
		b.WriteString(" problems: ")
	}
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.String())
	}
	if e.Omitted > 0 {
		b.WriteString("; ")
		b.WriteString(e.omittedNote())
	}
	return b.String()
}

// Summary is a one-line account of the problems for records that keep the
// full list beside it (a dead letter's errors), so the list is stored once:
// the first problem and how many more there are.
func (e *ValidationError) Summary() string {
	if len(e.Errors) == 0 {
		return "invalid intent"
	}
	s := "invalid intent: " + e.Errors[0].String()
	if n := e.Total() - 1; n > 0 {
		s += "; and " + strconv.Itoa(n) + " more problems (see errors)"
	}
	return s
}

func (e *ValidationError) omittedNote() string {
	return "and " + strconv.Itoa(e.Omitted) + " more problems not listed (fix these first)"
}

// Problems returns each problem as "field: problem", ready for printing one
// per line (the CLI and the dead-letter record use it). When problems were
// omitted, a last line says how many.
func (e *ValidationError) Problems() []string {
	out := make([]string, len(e.Errors), len(e.Errors)+1)
	for i, fe := range e.Errors {
		out[i] = fe.String()
	}
	if e.Omitted > 0 {
		out = append(out, e.omittedNote())
	}
	return out
}

// problems collects FieldErrors while validating, keeping the first
// MaxProblems and counting the rest.
type problems struct {
	list    []FieldError
	omitted int
}

func (p *problems) add(field, problem string) {
	if len(p.list) >= MaxProblems {
		p.omitted++
		return
	}
	p.list = append(p.list, FieldError{Field: truncate(field, MaxFieldLength), Problem: truncate(problem, MaxProblemLength)})
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	return &ValidationError{Errors: p.list, Omitted: p.omitted}
}

// truncate cuts s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
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
