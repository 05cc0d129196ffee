package intent

import (
	"encoding/json"
	"testing"
)

// A number reaches the receiver as the value the producer wrote, or the
// intent is refused: an integer a float64 cannot hold (a 64-bit id, an
// account number) used to be rounded silently, so the SET carried another
// number than the intent. Integers within ±(2^53-1) (RFC 7493 section
// 2.2) and numbers written as decimals or with an exponent pass as before.
func TestDecodeIntegersKeepTheirValue(t *testing.T) {
	for _, tc := range []struct {
		lit  string
		want string // the member as the SET carries it
	}{
		{"9007199254740991", "9007199254740991"},
		{"-9007199254740991", "-9007199254740991"},
		{"123456789012345", "123456789012345"},
		{"1e22", "1e+22"},
		{"1.5", "1.5"},
		{"-0", "-0"},
	} {
		in, err := Decode([]byte(withSubject("https://example.com/e", `"event":{"n":`+tc.lit+`}`)), Options{AllowPrivateTypes: true})
		if err != nil {
			t.Errorf("%s: %v", tc.lit, err)
			continue
		}
		b, err := json.Marshal(in.Event["n"])
		if err != nil || string(b) != tc.want {
			t.Errorf("%s carried as %s (%v), want %s", tc.lit, b, err, tc.want)
		}
	}
	for _, lit := range []string{"9007199254740993", "12345678901234567890123", "-123456789012345678", "18446744073709551617", "9007199254740992",
		// Exact as doubles, but written back as 1152921504606847000 and
		// 1e+21: other numbers to a receiver that reads integers exactly.
		"1152921504606846976", "1000000000000000000000"} {
		if _, err := Decode([]byte(withSubject("https://example.com/e", `"event":{"n":`+lit+`}`)), Options{AllowPrivateTypes: true}); err == nil {
			t.Errorf("%s was accepted, and would reach the receiver as another number", lit)
		}
	}
}

// An intent built in Go gets, from Validate (so from queue.Publisher),
// the verdict the worker's Decode gives its encoded bytes: before, Publish
// accepted an int64 id beyond 2^53 and the worker got another number.
func TestValidateGoNumbersAsDecodeDoes(t *testing.T) {
	for _, v := range []any{
		int64(1<<53 - 1), int64(-(1<<53 - 1)), int64(1 << 53), int64(1 << 60), int64(-1 << 60), int(1 << 55),
		uint64(1<<64 - 1), uint(1 << 53), uint32(1<<32 - 1),
		float64(1 << 60), float64(1e22), float64(-1e20), float64(1.5), float32(1e20), float32(1 << 20),
		json.Number("9007199254740993"), json.Number("9007199254740993.5"), json.Number("12"),
		[]any{map[string]any{"deep": int64(1 << 60)}}, []map[string]any{{"ok": 1}},
	} {
		in := &Intent{ID: "go-1", Type: "https://example.com/e", Subject: map[string]any{"format": "email", "email": "a@example.com"},
			Event: map[string]any{"n": v}}
		verr := in.Validate(Options{AllowPrivateTypes: true})
		data, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		_, derr := Decode(data, Options{AllowPrivateTypes: true})
		if (verr == nil) != (derr == nil) {
			t.Errorf("%T %v: Validate says %v, Decode of %s says %v", v, v, verr, data, derr)
		}
	}
}
