package receiver

import (
	"bytes"
	"encoding/json"
)

// duplicate is a member name that appears more than once in one object.
type duplicate struct {
	path []string // member names leading to the object; nil for the top level
	name string
}

// duplicateMembers lists the repeated member names in a JSON document that
// has already decoded without error. encoding/json keeps the last of
// repeated members without a word; RFC 7519 §4 says a JWT parser must
// reject them or keep the last, and RFC 8417 §2.2 and SSF 1.0 §3.3 forbid
// them in events and in complex subjects, so the receiver looks for them
// itself. Array elements are not given a path element: a repeat inside an
// array's object is reported against the array's member.
func duplicateMembers(doc []byte) []duplicate {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var out []duplicate
	var walk func(path []string) bool
	walk = func(path []string) bool {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return false
				}
				k, _ := kt.(string)
				if seen[k] {
					out = append(out, duplicate{path: append([]string(nil), path...), name: k})
				}
				seen[k] = true
				if !walk(append(path, k)) {
					return false
				}
			}
			_, err = dec.Token() // '}'
			return err == nil
		case json.Delim('['):
			for dec.More() {
				if !walk(path) {
					return false
				}
			}
			_, err = dec.Token() // ']'
			return err == nil
		}
		return true
	}
	walk(nil)
	return out
}
