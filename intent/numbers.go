package intent

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
)

// maxSafeInteger is 2^53-1, the largest integer RFC 7493 (I-JSON) section
// 2.2 exchanges exactly. Beyond it an integer may not be exact in a
// float64, and even when it is, encoding/json writes it back with trailing
// zeros (2^60 as 1152921504606847000): either way the receiver would get
// another number than the producer wrote.
const maxSafeInteger = 1<<53 - 1

// unsafeInteger is the problem with an integer literal beyond
// ±maxSafeInteger.
func unsafeInteger(lit string) string {
	if len(lit) > 40 {
		lit = lit[:40] + "..."
	}
	return "integer " + lit + " is beyond ±(2^53-1) and would reach the receiver as another number " +
		"(a SET's numbers are IEEE 754 doubles, RFC 7493 section 2.2); send it as a string"
}

// goNumbers finds, in a value of an intent built in Go, the numbers that
// encode as an integer literal beyond ±maxSafeInteger, which Decode (the
// worker) refuses: so that Validate, and so Publish, refuses them first
// rather than publishing an intent that is then dead-lettered.
func goNumbers(v any, path string, p *problems) {
	switch t := v.(type) {
	case map[string]any:
		for k, m := range t {
			goNumbers(m, join(path, k), p)
		}
	case []any:
		for i, e := range t {
			goNumbers(e, index(path, i), p)
		}
	case []map[string]any:
		for i, e := range t {
			goNumbers(e, index(path, i), p)
		}
	case int:
		if t > maxSafeInteger || t < -maxSafeInteger {
			p.add(path, unsafeInteger(strconv.Itoa(t)))
		}
	case int64:
		if t > maxSafeInteger || t < -maxSafeInteger {
			p.add(path, unsafeInteger(strconv.FormatInt(t, 10)))
		}
	case uint:
		if t > maxSafeInteger {
			p.add(path, unsafeInteger(strconv.FormatUint(uint64(t), 10)))
		}
	case uint64:
		if t > maxSafeInteger {
			p.add(path, unsafeInteger(strconv.FormatUint(t, 10)))
		}
	case float32:
		goFloat(float64(t), 32, path, p)
	case float64:
		goFloat(t, 64, path, p)
	case json.Number:
		s := string(t)
		if !strings.ContainsAny(s, ".eE") {
			if f, err := t.Float64(); err == nil && (f > maxSafeInteger || f < -maxSafeInteger) {
				p.add(path, unsafeInteger(s))
			}
		}
	}
}

// goFloat checks a float as encoding/json writes it: without an exponent
// (so as an integer literal when integral) from 1e-6 up to 1e21.
func goFloat(f float64, bits int, path string, p *problems) {
	if a := math.Abs(f); a > maxSafeInteger && a < 1e21 && f == math.Trunc(f) {
		p.add(path, unsafeInteger(strconv.FormatFloat(f, 'f', -1, bits)))
	}
}
