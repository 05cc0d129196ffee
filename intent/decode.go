package intent

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Decode parses and validates one intent. It is strict: the document must
// be at most MaxSize bytes of valid UTF-8 holding one JSON object, with no
// unknown or repeated members, and must pass Validate. Every problem found
// is reported in one *ValidationError. The input is parsed once; Decode
// never panics on malformed input.
func Decode(data []byte, opts Options) (*Intent, error) {
	var p problems
	if len(data) > MaxSize {
		p.add("", "intent is "+strconv.Itoa(len(data))+" bytes; the limit is "+strconv.Itoa(MaxSize))
		return nil, p.err()
	}
	if !utf8.Valid(data) {
		p.add("", "intent is not valid UTF-8")
		return nil, p.err()
	}
	ps := parser{data: data, probs: &p, path: make([]pathElem, 0, 8)}
	doc, err := ps.parseDocument()
	if err != nil {
		return nil, p.err()
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		p.add("", "intent must be a JSON object, got "+jsonKind(doc))
		return nil, p.err()
	}
	in, skip := fromObject(obj, &p)
	in.validate(opts, skip, &p)
	if err := p.err(); err != nil {
		// The id names the intent in dead letters and logs when it is
		// itself valid (checked apart: the list of problems is capped).
		ve := err.(*ValidationError)
		var idp problems
		if validateID(in.ID, &idp); len(idp.list) == 0 {
			ve.ID = in.ID
		}
		return nil, ve
	}
	return in, nil
}

// fromObject moves the parsed members into an Intent, reporting members of
// the wrong JSON type and unknown members. Fields with a wrong type are
// marked in the returned skipSet.
func fromObject(obj map[string]any, p *problems) (*Intent, skipSet) {
	in := &Intent{}
	var skip skipSet
	wrong := func(field, want string, v any) {
		p.add(field, "must be "+want+", got "+jsonKind(v))
		skip.add(field)
	}
	if v, ok := obj["id"]; ok {
		if s, ok := v.(string); ok {
			in.ID = s
		} else {
			wrong("id", "a string", v)
		}
	}
	if v, ok := obj["type"]; ok {
		if s, ok := v.(string); ok {
			in.Type = s
		} else {
			wrong("type", `a string (an alias like "caep.session-revoked" or a URI)`, v)
		}
	}
	if v, ok := obj["subject"]; ok {
		if m, ok := v.(map[string]any); ok {
			in.Subject = m
		} else {
			wrong("subject", "an object (a subject identifier)", v)
		}
	}
	if v, ok := obj["event"]; ok {
		if m, ok := v.(map[string]any); ok {
			in.Event = m
		} else {
			wrong("event", "an object", v)
		}
	}
	if v, ok := obj["occurred_at"]; ok {
		s, isStr := v.(string)
		switch {
		case !isStr:
			wrong("occurred_at", `an RFC 3339 date-time string like "2026-11-27T04:05:06Z"`, v)
		default:
			t, err := parseRFC3339(s)
			if err != nil {
				p.add("occurred_at", quote(s)+` is not an RFC 3339 date-time like "2026-11-27T04:05:06Z" or "2026-11-27T05:05:06.5+01:00"`)
				skip.add("occurred_at")
			} else {
				in.OccurredAt = &t
			}
		}
	}
	if v, ok := obj["txn"]; ok {
		s, isStr := v.(string)
		switch {
		case !isStr:
			wrong("txn", "a string", v)
		case s == "":
			p.add("txn", "must not be empty; omit it instead")
		default:
			in.Txn = s
		}
	}
	if v, ok := obj["receivers"]; ok {
		if list, isList := v.([]any); isList {
			in.Receivers = make([]string, 0, len(list))
			for i, e := range list {
				if s, ok := e.(string); ok {
					in.Receivers = append(in.Receivers, s)
				} else {
					p.add(index("receivers", i), "must be a receiver name string, got "+jsonKind(e))
					skip.add("receivers")
				}
			}
		} else {
			wrong("receivers", "an array of receiver names", v)
		}
	}
	if v, ok := obj["extra_events"]; ok {
		if m, isObj := v.(map[string]any); isObj {
			in.ExtraEvents = make(map[string]map[string]any, len(m))
			for k, e := range m {
				if em, ok := e.(map[string]any); ok {
					in.ExtraEvents[k] = em
				} else {
					// Reported here; Validate then only checks keys.
					p.add(join("extra_events", k), "must be an object (use {} for no members), got "+jsonKind(e))
				}
			}
		} else {
			wrong("extra_events", "an object of event-type URI to event object", v)
		}
	}
	if len(obj) > len(fields) || hasUnknown(obj) {
		for _, k := range sortedKeys(obj) {
			if !contains(fields, k) {
				p.add(join("", k), "unknown member; an intent has only "+fieldList)
			}
		}
	}
	return in, skip
}

func hasUnknown(obj map[string]any) bool {
	for k := range obj {
		if !contains(fields, k) {
			return true
		}
	}
	return false
}

// parseRFC3339 accepts exactly RFC 3339's date-time production with an
// upper-case "T" and "Z": time.Parse alone also takes a comma before the
// fraction, which the JSON Schema's pattern (and many other languages'
// parsers) would refuse.
func parseRFC3339(s string) (time.Time, error) {
	if !rfc3339Shape(s) {
		return time.Time{}, strconv.ErrSyntax
	}
	return time.Parse(time.RFC3339Nano, s)
}

// rfc3339Shape matches
// ^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$.
func rfc3339Shape(s string) bool {
	const head = "dddd-dd-ddTdd:dd:dd"
	if len(s) < len(head)+1 {
		return false
	}
	for i := 0; i < len(head); i++ {
		if !shapeByte(head[i], s[i]) {
			return false
		}
	}
	rest := s[len(head):]
	if rest[0] == '.' {
		n := 1
		for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	if rest == "Z" {
		return true
	}
	if len(rest) != 6 || rest[0] != '+' && rest[0] != '-' {
		return false
	}
	for i, c := range []byte("dd:dd") {
		if !shapeByte(c, rest[1+i]) {
			return false
		}
	}
	// time.Parse takes offsets up to +99:59, but time.Time cannot marshal
	// them back, and RFC 3339 means real offsets.
	return rest[1:3] <= "23" && rest[4:6] <= "59"
}

func shapeByte(want, got byte) bool {
	if want == 'd' {
		return got >= '0' && got <= '9'
	}
	return want == got
}
