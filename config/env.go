package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// expandEnv replaces ${NAME} in every string value of cfg (strings, secrets,
// and lists of them) with the environment variable NAME, and "$${" with a
// literal "${". It runs after YAML decoding, on the decoded strings, so a
// value containing YAML syntax (a secret with ": " or "#") cannot change the
// document's structure. A variable that is not set is a problem named with
// its YAML path; its value never appears in an error. Values whose path
// skip reports are left as written (QueueOnly).
func expandEnv(cfg *Config, lookup func(string) (string, bool), p *problems, skip func(path string) bool) {
	walkStrings(reflect.ValueOf(cfg).Elem(), "", func(path string, v reflect.Value) {
		s := v.String()
		if !strings.Contains(s, "$") || skip(path) {
			return
		}
		out, missing, bad := expand(s, lookup)
		for _, name := range missing {
			p.add(path, "environment variable %s is not set; export it or write the value in the file", name)
		}
		if bad != "" {
			if strings.HasPrefix(bad, "$") {
				p.add(path, "%s", bad)
			} else {
				p.add(path, "%s; write ${NAME} for an environment variable or $${ for a literal ${", bad)
			}
		}
		if len(missing) == 0 && bad == "" {
			v.SetString(out)
		}
	})
}

// expand substitutes ${NAME} references in s. It returns the result, the
// names that are not set, and a description of a malformed reference.
// Only the braced form is recognised: a bare "$" is left alone so that
// secrets containing dollar signs survive unchanged.
func expand(s string, lookup func(string) (string, bool)) (string, []string, string) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); {
		if s[i] != '$' {
			b.WriteByte(s[i])
			i++
			continue
		}
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			if name := bareName(s[i+1:]); name != "" {
				// "$NAME" is kept literally (a secret may contain "$"),
				// but when it is the whole value, or NAME is set in the
				// environment, the operator almost surely meant the
				// variable: taking it literally would send "$NAME" as a
				// password. Refuse, and say how to write it.
				if _, set := lookup(name); set || s == "$"+name {
					return "", nil, fmt.Sprintf("$%s is not expanded (only ${NAME} is, so that secrets may contain $): write ${%s} for the environment variable, or, for a secret that really is this text, put it in the matching *_file", name, name)
				}
			}
			b.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", nil, "unterminated ${ reference"
		}
		name := s[i+2 : i+end]
		if !validEnvName(name) {
			return "", nil, "invalid environment variable name " + strconv.Quote(name)
		}
		val, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		b.WriteString(val)
		i += end + 1
	}
	return b.String(), missing, ""
}

// bareName returns the environment-variable name at the start of s (what
// follows a "$"), or "".
func bareName(s string) string {
	n := 0
	for n < len(s) && (s[n] == '_' || s[n] >= 'A' && s[n] <= 'Z' || s[n] >= 'a' && s[n] <= 'z' || n > 0 && s[n] >= '0' && s[n] <= '9') {
		n++
	}
	return s[:n]
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// walkStrings calls fn for every settable string-kinded value reachable
// from v through structs, slices and pointers, with its YAML path.
func walkStrings(v reflect.Value, path string, fn func(path string, v reflect.Value)) {
	switch v.Kind() {
	case reflect.String:
		fn(path, v)
	case reflect.Pointer:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkStrings(v.Index(i), path+"["+strconv.Itoa(i)+"]", fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			walkStrings(v.Field(i), joinPath(path, name), fn)
		}
	}
}

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}
