package receiver_test

import (
	"encoding/json"
	"fmt"
	"go/build"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/receiver"
)

const module = "github.com/setrelay/setrelay"

// TestReceiverIsIndependentOfTheSigner walks the receiver package's
// imports (not its tests'), and those of every module package it reaches,
// and fails if any is set, signer or intent: the receiver must judge SETs
// by its own reading of the standards, so that a misreading on the
// transmitter side cannot hide in both.
func TestReceiverIsIndependentOfTheSigner(t *testing.T) {
	if bad := forbiddenImports(t, module+"/receiver"); len(bad) > 0 {
		t.Errorf("the receiver depends on the transmitter side: %s", strings.Join(bad, "; "))
	}
	// The walk must be able to find what it looks for: the relay does use
	// set and signer.
	if bad := forbiddenImports(t, module+"/relay"); len(bad) == 0 {
		t.Fatal("the import walk found nothing forbidden in relay, which imports set and signer: the walk is broken")
	}
}

// forbiddenImports lists "importer -> set|signer|intent" for every module
// package reached from path through non-test imports.
func forbiddenImports(t *testing.T, path string) []string {
	t.Helper()
	forbidden := []string{module + "/set", module + "/signer", module + "/intent"}
	seen := map[string]bool{}
	var bad []string
	var walk func(path, from string)
	walk = func(path, from string) {
		if seen[path] {
			return
		}
		seen[path] = true
		if slices.Contains(forbidden, path) {
			bad = append(bad, from+" -> "+path)
			return
		}
		pkg, err := build.Default.Import(path, ".", 0)
		if err != nil {
			t.Fatalf("import %s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				walk(imp, path)
			}
		}
	}
	walk(path, "")
	return bad
}

// knownDifferences are the differences between the receiver's event
// catalogue and setrelay's intent catalogue that are understood, each with
// the reason. TestCatalogueMatchesIntent fails on any other difference,
// and on a listed one that has gone away, so the list stays true.
var knownDifferences = map[string]string{
	// None at present. (CAEP 1.0 §2's reason_admin and reason_user, which
	// intent once also took as a plain string, now agree: objects only.)
}

// TestCatalogueMatchesIntent compares the receiver's catalogue of CAEP,
// RISC and SSF event types with setrelay's intent catalogue: the same
// types, the same required members, the same subject formats, and, member
// by member, the same verdict from intent.Decode on a valid value, a value
// of the wrong JSON type and, for enumerations, every allowed value and one
// outside them.
func TestCatalogueMatchesIntent(t *testing.T) {
	var diffs []string
	differ := func(format string, a ...any) { diffs = append(diffs, fmt.Sprintf(format, a...)) }

	mine := map[string]receiver.EventType{}
	for _, et := range receiver.EventTypes() {
		mine[et.URI] = et
	}
	theirs := map[string]intent.TypeInfo{}
	for _, ti := range intent.KnownTypes() {
		theirs[ti.URI] = ti
	}
	for uri := range theirs {
		if _, ok := mine[uri]; !ok {
			differ("%s: in intent's catalogue only", uri)
		}
	}
	for _, uri := range sortedKeys(mine) {
		et := mine[uri]
		ti, ok := theirs[uri]
		if !ok {
			differ("%s: in the receiver's catalogue only", uri)
			continue
		}
		var req []string
		for _, m := range et.Members {
			if m.Required {
				req = append(req, m.Name)
			}
		}
		sort.Strings(req)
		their := append([]string(nil), ti.Required...)
		sort.Strings(their)
		if !slices.Equal(req, their) {
			differ("%s: required members %v here, %v in intent", uri, req, their)
		}
		if !slices.Equal(et.SubjectFormats, ti.SubjectFormats) {
			differ("%s: subject formats %v here, %v in intent", uri, et.SubjectFormats, ti.SubjectFormats)
		}
		subject := map[string]any{"format": "opaque", "id": "x"}
		if len(et.SubjectFormats) > 0 && et.SubjectFormats[0] == "email" {
			subject = map[string]any{"format": "email", "email": "alice@example.com"}
		}
		base := map[string]any{}
		for _, m := range et.Members {
			if m.Required {
				base[m.Name] = validValue(m)
			}
		}
		accepts := func(member string, v any) (bool, string) {
			ev := map[string]any{}
			for k, x := range base {
				ev[k] = x
			}
			ev[member] = v
			doc, err := json.Marshal(map[string]any{"id": "cmp-1", "type": uri, "event": ev, "subject": subject})
			if err != nil {
				t.Fatal(err)
			}
			_, err = intent.Decode(doc, intent.Options{})
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		}
		for _, m := range et.Members {
			if ok, why := accepts(m.Name, validValue(m)); !ok {
				differ("%s#%s: intent refuses %s, which the receiver accepts: %s", uri, m.Name, jsonText(validValue(m)), why)
			}
			for _, v := range m.Values {
				if ok, why := accepts(m.Name, v); !ok {
					differ("%s#%s: intent refuses the value %q: %s", uri, m.Name, v, why)
				}
			}
			if m.Open {
				if ok, why := accepts(m.Name, "any-agreed-value"); !ok {
					differ("%s#%s: intent refuses a value the specification allows by agreement: %s", uri, m.Name, why)
				}
			} else if len(m.Values) > 0 {
				if ok, _ := accepts(m.Name, "bogus-value"); ok {
					differ("%s#%s: intent accepts %q outside %v", uri, m.Name, "bogus-value", m.Values)
				}
			} else if m.Kind == receiver.KindString {
				if ok, why := accepts(m.Name, "any-agreed-value"); !ok {
					differ("%s#%s: intent enumerates a member the receiver leaves open: %s", uri, m.Name, why)
				}
			}
			if ok, _ := accepts(m.Name, map[string]any{}); ok && m.NonEmpty {
				differ("%s#%s: intent accepts an empty object", uri, m.Name)
			}
			if ok, _ := accepts(m.Name, wrongValue(m)); ok {
				differ("%s#%s: intent accepts %s, not a %s", uri, m.Name, jsonText(wrongValue(m)), m.Kind)
			}
		}
	}

	observed := map[string]bool{}
	for _, d := range diffs {
		observed[d] = true
		if why, ok := knownDifferences[d]; ok {
			t.Logf("known difference: %s (%s)", d, why)
			continue
		}
		t.Errorf("catalogues differ: %s", d)
	}
	for d := range knownDifferences {
		if !observed[d] {
			t.Errorf("listed difference no longer seen, remove it from knownDifferences: %s", d)
		}
	}
}

func validValue(m receiver.EventMember) any {
	switch {
	case len(m.Values) > 0:
		return m.Values[0]
	case m.Kind == receiver.KindObject:
		return map[string]any{"role": "admin"}
	case m.Kind == receiver.KindNumericDate:
		return 1700000000
	case m.Kind == receiver.KindStringArray:
		return []string{"pwd"}
	case m.Kind == receiver.KindLangObject:
		return map[string]any{"en": "text"}
	}
	return "value"
}

func wrongValue(m receiver.EventMember) any {
	switch m.Kind {
	case receiver.KindObject:
		return "a string"
	case receiver.KindNumericDate:
		return 1.5
	case receiver.KindStringArray:
		return []any{1}
	case receiver.KindLangObject:
		return "a plain string"
	}
	return 42
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
