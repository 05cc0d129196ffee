package intent

import (
	"encoding/json"
	"strings"
	"testing"
)

// validValue returns a value that satisfies a catalogue member.
func validValue(m member) any {
	switch {
	case len(m.enum) > 0:
		return m.enum[len(m.enum)-1]
	case m.kind == kindObject:
		return map[string]any{"role": "admin"}
	case m.kind == kindNumericDate:
		return 1700000000
	case m.kind == kindStringArray:
		return []string{"pwd"}
	case m.kind == kindLangText, m.kind == kindLangObject:
		return map[string]any{"en": "text"}
	}
	return "value"
}

// invalidValue returns a value of the member's kind that is wrong.
func invalidValue(m member) any {
	switch {
	case len(m.enum) > 0 && m.open:
		return "" // any other non-empty string may be an agreed value
	case len(m.enum) > 0:
		return "bogus-" + m.enum[0]
	case m.kind == kindObject:
		return "string"
	case m.kind == kindNumericDate:
		return 1.5
	case m.kind == kindStringArray:
		return []any{1}
	case m.kind == kindLangText:
		return map[string]any{"": "x"}
	case m.kind == kindLangObject:
		return "a plain string" // CAEP 1.0 section 2: an object, never a string
	}
	return 42
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCatalogue walks every CAEP, RISC and SSF event type: the alias and the
// URI both resolve and decode, every member accepts a valid value, every
// required member is enforced, and every member rejects a wrong value.
func TestCatalogue(t *testing.T) {
	if got := len(KnownTypes()); got != 8+14+2 {
		t.Fatalf("catalogue has %d types, want 24 (8 CAEP, 14 RISC, 2 SSF)", got)
	}
	prefixes := map[Profile]string{ProfileCAEP: CAEPPrefix, ProfileRISC: RISCPrefix, ProfileSSF: SSFPrefix}
	for _, et := range catalogue {
		t.Run(et.Alias, func(t *testing.T) {
			if !strings.HasPrefix(et.URI, prefixes[et.Profile]) || !strings.HasPrefix(et.Alias, string(et.Profile)+".") ||
				strings.TrimPrefix(et.URI, prefixes[et.Profile]) != strings.TrimPrefix(et.Alias, string(et.Profile)+".") {
				t.Fatalf("alias %q and URI %q do not match", et.Alias, et.URI)
			}
			if !et.SubjectRequired {
				t.Fatalf("SubjectRequired = false; SSF 1.0 gives every SET a subject")
			}
			full := map[string]any{}
			for _, m := range et.members {
				full[m.name] = validValue(m)
			}
			// A subject the type allows; where the type restricts the
			// format, a subject of another format is refused.
			opaque := map[string]any{"format": "opaque", "id": "x"}
			email := map[string]any{"format": "email", "email": "alice@example.com"}
			subject := opaque
			if len(et.SubjectFormats) > 0 {
				wrong := opaque
				if et.SubjectFormats[0] == "opaque" {
					wrong = email
				} else {
					subject = email
				}
				doc := map[string]any{"id": "cat-0", "type": et.Alias, "event": full, "subject": wrong}
				if !hasProblem(mustProblems(t, string(encode(t, doc)), Options{}), "subject.format", strings.Join(et.SubjectFormats, " or ")) {
					t.Errorf("a %s subject is not refused for %s", wrong["format"], et.Alias)
				}
			}
			for _, name := range []string{et.Alias, et.URI} {
				uri, known := ResolveType(name)
				if uri != et.URI || !known {
					t.Fatalf("ResolveType(%q) = %q, %v", name, uri, known)
				}
				doc := map[string]any{"id": "cat-1", "type": name, "event": full, "subject": subject}
				in, err := Decode(encode(t, doc), Options{})
				if err != nil {
					t.Fatalf("%s with every member: %v", name, err)
				}
				if in.EventType != et.URI {
					t.Fatalf("EventType = %q", in.EventType)
				}
			}
			// Subject presence.
			noSubject := map[string]any{"id": "cat-2", "type": et.Alias, "event": full}
			_, err := Decode(encode(t, noSubject), Options{})
			if (err == nil) == et.SubjectRequired {
				t.Fatalf("without subject: err = %v, SubjectRequired = %v", err, et.SubjectRequired)
			}
			for _, m := range et.members {
				// Each member with a wrong value.
				ev := map[string]any{}
				for k, v := range full {
					ev[k] = v
				}
				ev[m.name] = invalidValue(m)
				doc := map[string]any{"id": "cat-3", "type": et.Alias, "event": ev, "subject": subject}
				probs := mustProblems(t, string(encode(t, doc)), Options{})
				field := "event." + m.name
				found := false
				for _, p := range probs {
					found = found || strings.HasPrefix(p.Field, field)
				}
				if !found {
					t.Errorf("wrong %s not reported: %q", m.name, probs)
				}
				if !m.required {
					continue
				}
				// Each required member missing.
				delete(ev, m.name)
				doc["event"] = ev
				probs = mustProblems(t, string(encode(t, doc)), Options{})
				if !hasProblem(probs, field, "required for "+et.Alias) {
					t.Errorf("missing %s not reported: %q", m.name, probs)
				}
			}
		})
	}
}

func TestKnownTypesIsACopy(t *testing.T) {
	a := KnownTypes()
	for i := range a {
		if len(a[i].Required) > 0 {
			a[i].Required[0] = "mutated"
		}
		a[i].URI = "mutated"
	}
	for _, ti := range KnownTypes() {
		if ti.URI == "mutated" || (len(ti.Required) > 0 && ti.Required[0] == "mutated") {
			t.Fatal("KnownTypes exposes the catalogue")
		}
	}
}
