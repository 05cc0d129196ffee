package intent

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// specExample is one SET from the SSF 1.0 or CAEP 1.0 text, kept in
// testdata/spec/examples.json. The set package signs the same examples.
type specExample struct {
	Name   string         `json:"name"`
	Source string         `json:"source"`
	SET    map[string]any `json:"set"`
}

// intentFor turns a specification SET back into the intent that would
// produce it: the single event's type and members, sub_id as the subject.
func (e specExample) intentFor(t *testing.T) []byte {
	t.Helper()
	events := e.SET["events"].(map[string]any)
	if len(events) != 1 {
		t.Fatalf("%s: want one event, got %d", e.Name, len(events))
	}
	doc := map[string]any{"id": e.Name, "subject": e.SET["sub_id"]}
	for typ, ev := range events {
		doc["type"] = typ
		if m := ev.(map[string]any); len(m) > 0 {
			doc["event"] = m
		}
	}
	if txn, ok := e.SET["txn"]; ok {
		doc["txn"] = txn
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadSpecExamples(t *testing.T) []specExample {
	t.Helper()
	data, err := os.ReadFile("testdata/spec/examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var out []specExample
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) < 10 {
		t.Fatalf("only %d specification examples", len(out))
	}
	return out
}

// TestSpecExamplesDecode checks that every subject and event of the SSF 1.0
// and CAEP 1.0 examples (complex subjects included) is accepted by both the
// Go validator and the JSON Schema, and that the subject comes out exactly
// as the specification wrote it.
func TestSpecExamplesDecode(t *testing.T) {
	sch := compileSchema(t)
	for _, ex := range loadSpecExamples(t) {
		t.Run(ex.Name, func(t *testing.T) {
			doc := ex.intentFor(t)
			in, err := Decode(doc, Options{})
			if err != nil {
				t.Fatalf("%s is refused: %v", ex.Source, err)
			}
			if !reflect.DeepEqual(in.Subject, ex.SET["sub_id"]) {
				t.Errorf("subject changed: got %v, want %v", in.Subject, ex.SET["sub_id"])
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
			if err != nil {
				t.Fatal(err)
			}
			if err := sch.Validate(inst); err != nil {
				t.Errorf("JSON Schema refuses %s: %v", ex.Source, err)
			}
		})
	}
}
