package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretRedacts(t *testing.T) {
	const value = "s3cr3t-VALUE"
	s := Secret(value)
	type holder struct {
		S   Secret
		P   *Secret
		Arr []Secret
	}
	h := holder{S: s, P: &s, Arr: []Secret{s}}
	renderings := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s"} {
		renderings["secret "+verb] = fmt.Sprintf(verb, s)
		renderings["holder "+verb] = fmt.Sprintf(verb, h)
	}
	renderings["String"] = s.String()
	j, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	renderings["json"] = string(j)
	txt, _ := s.MarshalText()
	renderings["text"] = string(txt)
	for name, out := range renderings {
		if strings.Contains(out, value) || strings.Contains(out, fmt.Sprintf("%x", value)) {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("%s does not say it redacted: %s", name, out)
		}
	}
	if s.Reveal() != value {
		t.Fatal("Reveal lost the value")
	}
	if Secret("").String() != "" || Secret("").IsSet() {
		t.Fatal("empty secret should print empty and not be set")
	}
}

func TestLoadSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUSH_TEST_SECRET", "from-env")

	tests := []struct {
		name, value, file, want string
		wantErr                 bool
	}{
		{"literal", "lit$eral$", "", "lit$eral$", false},
		{"env", "${PUSH_TEST_SECRET}", "", "from-env", false},
		{"env embedded", "Bearer ${PUSH_TEST_SECRET}", "", "Bearer from-env", false},
		{"bare dollar kept", "$PUSH_TEST_SECRET", "", "$PUSH_TEST_SECRET", false},
		{"env missing", "${PUSH_TEST_NOPE_NOT_SET}", "", "", true},
		{"file", "", file, "from-file", false},
		{"file missing", "", filepath.Join(dir, "nope"), "", true},
		{"both", "x", file, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadSecret(tt.value, tt.file)
			if tt.wantErr {
				if !errors.Is(err, ErrSecretSource) {
					t.Fatalf("err = %v, want ErrSecretSource", err)
				}
				return
			}
			if err != nil || got.Reveal() != tt.want {
				t.Fatalf("got %q, %v; want %q", got.Reveal(), err, tt.want)
			}
		})
	}
}
