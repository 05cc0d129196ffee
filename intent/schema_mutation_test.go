package intent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestSchemaAgreesOnMutations widens the agreement corpus mechanically:
// every member of every good corpus intent is deleted, and replaced by each
// of a set of wrong and borderline values, and the schema and Decode must
// still reach the same verdict on every variant.
func TestSchemaAgreesOnMutations(t *testing.T) {
	sch := compileSchema(t)
	opts := Options{AllowPrivateTypes: true}
	replacements := []any{nil, "", "x", "a@b.c", "urn:x:y", "caep.session-revoked", 0, 1.5, -1, true,
		[]any{}, []any{"a"}, map[string]any{}, map[string]any{"format": "opaque", "id": "i"}}
	files, err := filepath.Glob(filepath.Join("testdata", "intents", "good", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	variants, disagreements := 0, 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatal(err)
		}
		for _, v := range mutations(doc, replacements) {
			variants++
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			_, goErr := Decode(b, opts)
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			schemaErr := sch.Validate(inst)
			if (goErr == nil) != (schemaErr == nil) {
				disagreements++
				if disagreements <= 20 {
					t.Errorf("%s: Go accepted=%v, schema accepted=%v on %s\n go: %v\n schema: %v",
						filepath.Base(f), goErr == nil, schemaErr == nil, b, goErr, schemaErr)
				}
			}
		}
	}
	if variants < 1000 {
		t.Fatalf("only %d variants", variants)
	}
	t.Logf("%d variants, %d disagreements", variants, disagreements)
}

// mutations returns copies of doc with one member (at any depth) deleted or
// replaced.
func mutations(doc any, repl []any) []any {
	var out []any
	var walk func(node any, rebuild func(any) any)
	walk = func(node any, rebuild func(any) any) {
		switch n := node.(type) {
		case map[string]any:
			for k, child := range n {
				k, child := k, child
				without := func() any {
					c := cloneMap(n)
					delete(c, k)
					return rebuild(c)
				}
				out = append(out, without())
				with := func(v any) any {
					c := cloneMap(n)
					c[k] = v
					return rebuild(c)
				}
				for _, r := range repl {
					out = append(out, with(r))
				}
				walk(child, with)
			}
		case []any:
			for i, child := range n {
				i := i
				with := func(v any) any {
					c := append([]any(nil), n...)
					c[i] = v
					return rebuild(c)
				}
				for _, r := range repl {
					out = append(out, with(r))
				}
				walk(child, with)
			}
		}
	}
	walk(doc, func(v any) any { return v })
	return out
}

func cloneMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
