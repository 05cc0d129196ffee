package intent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzDecode checks that Decode never panics, that every rejection is a
// non-empty *ValidationError, and that every accepted intent survives a
// round trip: marshal, decode again, and get an equal intent. The seed
// corpus lives in testdata/fuzz/FuzzDecode; the agreement corpus is added
// too so the fuzzer starts from realistic intents.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "intents", "*", "*.json"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
	}
	f.Add(manyProblems(), false)
	f.Fuzz(func(t *testing.T, data []byte, allowPrivate bool) {
		opts := Options{AllowPrivateTypes: allowPrivate}
		in, err := Decode(data, opts)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("rejection is not a non-empty *ValidationError: %#v", err)
			}
			// The error is bounded whatever the input: it goes into logs
			// and dead letters.
			if n := len(err.Error()); n > MaxErrorLength {
				t.Fatalf("error is %d bytes, over MaxErrorLength %d", n, MaxErrorLength)
			}
			if len(ve.Errors) > MaxProblems {
				t.Fatalf("%d problems listed, over MaxProblems", len(ve.Errors))
			}
			for _, fe := range ve.Errors {
				if len(fe.Field) > MaxFieldLength || len(fe.Problem) > MaxProblemLength {
					t.Fatalf("problem too long: field %d bytes, problem %d bytes", len(fe.Field), len(fe.Problem))
				}
			}
			if in != nil {
				t.Fatal("Decode returned an intent with an error")
			}
			return
		}
		if err := in.Validate(opts); err != nil {
			t.Fatalf("decoded intent fails Validate: %v", err)
		}
		again, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("accepted intent does not marshal: %v", err)
		}
		in2, err := Decode(again, opts)
		if err != nil {
			t.Fatalf("re-marshalled intent %s rejected: %v", again, err)
		}
		if !sameIntent(in, in2) {
			t.Fatalf("round trip changed the intent:\n%+v\n%+v", in, in2)
		}
	})
}

// sameIntent compares intents the way the wire sees them: instants by
// Equal (the zone name is not on the wire) and empty maps like absent ones
// (omitempty drops them).
func sameIntent(a, b *Intent) bool {
	if (a.OccurredAt == nil) != (b.OccurredAt == nil) ||
		a.OccurredAt != nil && !a.OccurredAt.Equal(*b.OccurredAt) {
		return false
	}
	ac, bc := *a, *b
	ac.OccurredAt, bc.OccurredAt = nil, nil
	for _, c := range []*Intent{&ac, &bc} {
		if len(c.Event) == 0 {
			c.Event = nil
		}
		if len(c.Subject) == 0 {
			c.Subject = nil
		}
		if len(c.ExtraEvents) == 0 {
			c.ExtraEvents = nil
		}
		if len(c.Receivers) == 0 {
			c.Receivers = nil
		}
	}
	return reflect.DeepEqual(ac, bc)
}
