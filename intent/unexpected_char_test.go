package intent

import (
	"strings"
	"testing"
)

// TestUnexpectedCharacter: a stray non-ASCII character is named whole (it
// was named by its first byte: 'ï' for a byte order mark, 'Ã' for 'é'), and a
// byte order mark is called what it is.
func TestUnexpectedCharacter(t *testing.T) {
	const doc = `{"id":"x","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}`
	cases := []struct {
		name, data, want string
	}{
		{"byte order mark", "\uFEFF" + doc, "invalid JSON at byte 0: unexpected byte order mark (U+FEFF)"},
		{"non-ASCII value", `{"id":é}`, `invalid JSON at byte 6: unexpected character 'é'`},
		{"ASCII", `{"id":x}`, `invalid JSON at byte 6: unexpected character 'x'`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode([]byte(c.data), Options{})
			if err == nil {
				t.Fatal("decoded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}
