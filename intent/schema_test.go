package intent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatalf("schema.json is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// The schema relies on format assertion for date-time, uri, ipv4 and
	// ipv6, as its description tells producers.
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// TestSchemaAgreesWithDecode proves the JSON Schema and the Go validator
// accept and reject the same corpus: every file under testdata/intents/good
// must pass both, every file under testdata/intents/bad must fail both.
func TestSchemaAgreesWithDecode(t *testing.T) {
	sch := compileSchema(t)
	opts := Options{AllowPrivateTypes: true} // the schema describes this configuration
	total := 0
	for _, verdict := range []string{"good", "bad"} {
		files, err := filepath.Glob(filepath.Join("testdata", "intents", verdict, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) < 20 {
			t.Fatalf("corpus %s has only %d cases", verdict, len(files))
		}
		total += len(files)
		for _, f := range files {
			t.Run(verdict+"/"+filepath.Base(f), func(t *testing.T) {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				_, goErr := Decode(data, opts)
				inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
				if err != nil {
					t.Fatalf("corpus file is not JSON: %v", err)
				}
				schemaErr := sch.Validate(inst)
				want := verdict == "good"
				if (goErr == nil) != want {
					t.Errorf("Go validator: accepted=%v, want %v (err: %v)", goErr == nil, want, goErr)
				}
				if (schemaErr == nil) != want {
					t.Errorf("JSON Schema: accepted=%v, want %v (err: %v)", schemaErr == nil, want, schemaErr)
				}
			})
		}
	}
	if total < 40 {
		t.Fatalf("corpus has %d cases, want at least 40", total)
	}
}

// TestSchemaCatalogue keeps the schema's hand-maintained parts in step with
// the Go catalogue: the type enum and each type's required event members.
func TestSchemaCatalogue(t *testing.T) {
	var doc struct {
		Properties struct {
			Type struct {
				AnyOf []struct {
					Enum []string `json:"enum"`
				} `json:"anyOf"`
			} `json:"type"`
		} `json:"properties"`
		AllOf []struct {
			If struct {
				Properties struct {
					Type struct {
						Enum []string `json:"enum"`
					} `json:"type"`
				} `json:"properties"`
			} `json:"if"`
			Then struct {
				Properties struct {
					Event struct {
						Required []string `json:"required"`
					} `json:"event"`
				} `json:"properties"`
			} `json:"then"`
		} `json:"allOf"`
	}
	if err := json.Unmarshal(Schema(), &doc); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, ti := range KnownTypes() {
		want = append(want, ti.Alias, ti.URI)
	}
	got := doc.Properties.Type.AnyOf[0].Enum
	sort.Strings(want)
	sort.Strings(got)
	if len(got) != len(want) {
		t.Fatalf("schema type enum has %d names, catalogue %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("schema type enum differs from catalogue: %q vs %q", got[i], want[i])
		}
	}
	rules := map[string][]string{}
	for _, r := range doc.AllOf {
		if e := r.If.Properties.Type.Enum; len(e) == 2 {
			rules[e[0]] = r.Then.Properties.Event.Required
		}
	}
	for _, ti := range KnownTypes() {
		req, ok := rules[ti.Alias]
		if !ok {
			t.Errorf("schema has no event rule for %s", ti.Alias)
			continue
		}
		if !equalStrings(req, ti.Required) {
			t.Errorf("%s: schema requires %v, catalogue %v", ti.Alias, req, ti.Required)
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
