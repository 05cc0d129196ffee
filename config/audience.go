package config

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// Audience is a receiver's aud: YAML accepts a single string or a list of
// strings, because most receivers have one audience and the example
// writes it as a plain string.
type Audience []string

// UnmarshalYAML accepts a scalar or a sequence of scalars. Errors are
// returned as *yaml.TypeError so the decoder collects them with every other
// problem instead of stopping at the first.
func (a *Audience) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			*a = nil
			return nil
		}
		*a = Audience{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(Audience, 0, len(n.Content))
		var problems []string
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				problems = append(problems, fmt.Sprintf("line %d: audience entries must be strings", item.Line))
				continue
			}
			out = append(out, item.Value)
		}
		if len(problems) > 0 {
			return &yaml.TypeError{Errors: problems}
		}
		*a = out
		return nil
	default:
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: audience must be a string or a list of strings", n.Line)}}
	}
}
