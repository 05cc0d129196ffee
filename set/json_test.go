package set

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func nan() float64 { return math.NaN() }

// TestAppendValueMatchesEncodingJSON holds the hand-written encoder to
// encoding/json's exact bytes, which is what makes it a pure speed-up.
func TestAppendValueMatchesEncodingJSON(t *testing.T) {
	values := []any{
		nil, true, false, "", "plain", "quote\" back\\slash", "<script>&</script>", "tab\tnl\nctl\x01\x7f",
		"é ünïcödé ✓ 😀", "line\u2028sep\u2029", "bad utf8 \xff\xfe", float64(0), math.Copysign(0, -1) /* negative zero: a -0.0 literal is plain zero */, float64(42), float64(-7),
		1.5, 1e20, 1e21, 1e-7, 1e-6, 9.99e-7, -2.5e-10, 1.7e308, 5e-324, -1e21, 0.1, 123456789.125, math.MaxFloat64, 3, int64(-9), json.Number("12.50"),
		[]any{}, []any(nil), []any{"a", 1.0, nil, map[string]any{"z": 1.0, "a": 2.0}},
		map[string]any{}, map[string]any(nil), map[string]any{"b": "x", "a": []any{true}, "<k>": "v", "é": 1.0},
		[]string{"typed", "slice"}, map[string]string{"typed": "map"},
	}
	var all []byte
	for c := range 256 {
		all = append(all, byte(c))
	}
	values = append(values, string(all), "\b\f\r", "\u2027\u202a", "trunc\xe2\x80")
	for _, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendValue(nil, v, 0)
		if err != nil {
			t.Fatalf("appendValue(%#v): %v", v, err)
		}
		if string(got) != string(want) {
			t.Errorf("appendValue(%#v) = %s, encoding/json says %s", v, got, want)
		}
	}
}

// TestAppendValueRandom compares random decoded-JSON-shaped trees.
func TestAppendValueRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "B", "é", "<", "&", "\"", "\\", "\n", "\u2028", "\xff", "z", "0", " "}
	str := func() string {
		var b strings.Builder
		for range r.IntN(6) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := r.IntN(7); {
		case depth > 3 || k == 0:
			return str()
		case k == 1:
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		case k == 2:
			return float64(r.IntN(2000) - 1000)
		case k == 3:
			return r.IntN(2) == 0
		case k == 4:
			return nil
		case k == 5:
			a := make([]any, r.IntN(4))
			for i := range a {
				a[i] = gen(depth + 1)
			}
			return a
		default:
			m := map[string]any{}
			for range r.IntN(20) {
				m[str()] = gen(depth + 1)
			}
			return m
		}
	}
	for range 2000 {
		v := gen(0)
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendValue(nil, v, 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("appendValue = %s, encoding/json says %s", got, want)
		}
	}
}

func TestAppendValueDepthLimit(t *testing.T) {
	m := map[string]any{}
	m["self"] = m
	if _, err := appendValue(nil, m, 0); err == nil {
		t.Fatal("a cyclic map was encoded")
	}
}

// FuzzAppendValue holds the encoder to encoding/json on arbitrary JSON
// documents: go test ./set -run '^$' -fuzz FuzzAppendValue -fuzztime 20s
func FuzzAppendValue(f *testing.F) {
	for _, s := range []string{
		`{"reason":"hijacking","subject":{"format":"iss_sub","iss":"https://idp.example.com/","sub":"7375626A656374"}}`,
		`{"a":[1,2.5,-0,1e-7,1e21,null,true,"<&>"],"":{"\u2028":"\ud800"}}`,
		`[{"z":{}},{"y":[]}]`, `"\u0000\u001f\u007f"`, `123456789012345678901234567890`, `-0.000001`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v any
		if json.Unmarshal(data, &v) != nil {
			return
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendValue(nil, v, 0)
		if err != nil {
			if strings.Contains(err.Error(), "nested deeper") {
				return
			}
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("appendValue = %s, encoding/json says %s", got, want)
		}
	})
}
