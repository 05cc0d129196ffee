package intent

import (
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting. An intent is a handful of levels deep; the bound
// keeps a hostile document from exhausting the stack of a worker.
const maxDepth = 64

// errSyntax stops the parser; the details are already in parser.problems.
var errSyntax = errors.New("syntax")

// parser is a small strict JSON parser. encoding/json neither reports
// duplicate keys nor lets us collect every problem in one pass without
// decoding twice, so the intent is parsed once here into the same generic
// values encoding/json produces (map[string]any, []any, string, float64,
// bool, nil) while duplicates are recorded with their path.
type parser struct {
	data  []byte
	pos   int
	depth int
	path  []pathElem
	probs *problems
}

type pathElem struct {
	key string
	idx int // -1 for object members
}

func (p *parser) pathString() string {
	s := ""
	for i, e := range p.path {
		if i == 8 {
			// A deeply nested syntax error needs a hint, not the full path.
			return s + "..."
		}
		if e.idx >= 0 {
			s = index(s, e.idx)
		} else {
			s = join(s, e.key)
		}
	}
	return s
}

func (p *parser) fail(msg string) error {
	p.probs.add(p.pathString(), "invalid JSON at byte "+strconv.Itoa(p.pos)+": "+msg)
	return errSyntax
}

func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// parseDocument parses one JSON value followed only by whitespace.
func (p *parser) parseDocument() (any, error) {
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.fail("unexpected data after the top-level value")
	}
	return v, nil
}

func (p *parser) value() (any, error) {
	if p.pos >= len(p.data) {
		return nil, p.fail("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	default:
		// Decode has checked the input is UTF-8: name the whole character,
		// not its first byte, and say what a byte order mark is, since
		// editors on Windows add one and it is invisible.
		r, _ := utf8.DecodeRune(p.data[p.pos:])
		if r == '\uFEFF' {
			return nil, p.fail("unexpected byte order mark (U+FEFF); JSON must not start with one, remove it")
		}
		return nil, p.fail("unexpected character " + strconv.QuoteRune(r))
	}
}

func (p *parser) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return p.fail("invalid literal, expected " + lit)
	}
	p.pos += len(lit)
	return nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.fail("nested deeper than " + strconv.Itoa(maxDepth) + " levels")
	}
	return nil
}

func (p *parser) object() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // '{'
	m := make(map[string]any, 4)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		p.depth--
		return m, nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.fail("expected a member name in double quotes")
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.fail("expected ':' after member name")
		}
		p.pos++
		p.skipSpace()
		p.path = append(p.path, pathElem{key: key, idx: -1})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		if _, dup := m[key]; dup {
			// Keep the first value: a duplicate is an error anyway, and
			// the producer gets told where it is.
			p.probs.add(p.pathString(), "duplicate member; each member may appear only once")
		} else {
			m[key] = v
		}
		p.path = p.path[:len(p.path)-1]
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			p.depth--
			return m, nil
		default:
			return nil, p.fail("expected ',' or '}' in object")
		}
	}
}

func (p *parser) array() (any, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	p.pos++ // '['
	a := make([]any, 0, 2)
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		p.depth--
		return a, nil
	}
	for i := 0; ; i++ {
		p.skipSpace()
		p.path = append(p.path, pathElem{idx: i})
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		p.path = p.path[:len(p.path)-1]
		a = append(a, v)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.fail("unexpected end of input in array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return a, nil
		default:
			return nil, p.fail("expected ',' or ']' in array")
		}
	}
}

// key parses a member name. Names the intent format defines are interned,
// which saves an allocation for almost every member of a valid intent.
func (p *parser) key() (string, error) {
	start := p.pos + 1
	for i := start; i < len(p.data); i++ {
		c := p.data[i]
		if c == '"' {
			if k, ok := internedKeys[string(p.data[start:i])]; ok {
				p.pos = i + 1
				return k, nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	return p.str()
}

// internedKeys holds every member name of the intent format.
var internedKeys = func() map[string]string {
	m := map[string]string{}
	add := func(names ...string) {
		for _, n := range names {
			m[n] = n
		}
	}
	add(fields...)
	add("format", "subject_type")
	add(complexMembers...)
	for _, f := range subjectFormats {
		add(f.members...)
	}
	for _, et := range catalogue {
		for _, mb := range et.members {
			add(mb.name)
		}
	}
	return m
}()

// str parses a string starting at the opening quote. The input is already
// known to be valid UTF-8.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' {
			return p.strEscaped(start)
		}
		if c < 0x20 {
			return "", p.fail("control character in string; escape it")
		}
		p.pos++
	}
	return "", p.fail("unterminated string")
}

func (p *parser) strEscaped(start int) (string, error) {
	buf := make([]byte, 0, p.pos-start+16)
	buf = append(buf, p.data[start:p.pos]...)
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(buf), nil
		case c < 0x20:
			return "", p.fail("control character in string; escape it")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.data) {
			break
		}
		e := p.data[p.pos]
		p.pos++
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.fail(`invalid \u escape`)
			}
			if utf16.IsSurrogate(r) {
				// A valid pair becomes one rune; a lone surrogate becomes
				// U+FFFD, as encoding/json does.
				r2 := rune(-1)
				if p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
					save := p.pos
					p.pos += 2
					var ok2 bool
					if r2, ok2 = p.hex4(); !ok2 {
						return "", p.fail(`invalid \u escape`)
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						buf = utf8.AppendRune(buf, d)
						continue
					}
					p.pos = save
				}
				r = utf8.RuneError
			}
			buf = utf8.AppendRune(buf, r)
		default:
			return "", p.fail("invalid escape \\" + string(rune(e)))
		}
	}
	return "", p.fail("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if len(p.data)-p.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.pos += 4
	return r, true
}

// number parses a JSON number into a float64, the type encoding/json uses
// for numbers in map[string]any, so the rest of setrelay sees the same
// values whether an intent came from Decode or was built in Go.
func (p *parser) number() (any, error) {
	start := p.pos
	d := p.data
	if d[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(d) && d[p.pos] >= '0' && d[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	intDigits := 1
	if p.pos < len(d) && d[p.pos] == '0' {
		p.pos++
	} else if intDigits = digits(); intDigits == 0 {
		return nil, p.fail("invalid number")
	}
	integer := true
	if p.pos < len(d) && d[p.pos] == '.' {
		integer = false
		p.pos++
		if digits() == 0 {
			return nil, p.fail("invalid number: digits expected after '.'")
		}
	}
	if p.pos < len(d) && (d[p.pos] == 'e' || d[p.pos] == 'E') {
		integer = false
		p.pos++
		if p.pos < len(d) && (d[p.pos] == '+' || d[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.fail("invalid number: digits expected in exponent")
		}
	}
	f, err := strconv.ParseFloat(string(d[start:p.pos]), 64)
	if err != nil {
		return nil, p.fail("number out of range")
	}
	// Up to 15 digits cannot cross maxSafeInteger (see unsafeInteger).
	if integer && intDigits > 15 && (f > maxSafeInteger || f < -maxSafeInteger) {
		p.probs.add(p.pathString(), unsafeInteger(string(d[start:p.pos])))
	}
	return f, nil
}
