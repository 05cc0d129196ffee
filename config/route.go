package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/internal/suggest"
)

// Wants reports whether the receiver is sent in: its type is one the
// receiver requested (every catalogue type when events is empty, and
// private types only with allow_private_types), and the intent's receivers
// list, when it has one, names it. It is the worker's routing rule, here so
// that producers given the configuration can check an intent before it is
// stored.
func (r Receiver) Wants(in *intent.Intent) bool {
	if types := r.EventTypes(); len(types) > 0 {
		if !slices.Contains(types, in.EventType) {
			return false
		}
	} else if !r.AllowPrivateTypes {
		if _, known := intent.ResolveType(in.EventType); !known {
			return false
		}
	}
	return len(in.Receivers) == 0 || slices.Contains(in.Receivers, r.Name)
}

// Recipients lists, in configuration order, the receivers in is delivered
// to. None means it would be stored and then settled without a delivery.
func (c *Config) Recipients(in *intent.Intent) []string {
	var out []string
	for _, r := range c.Receivers {
		if r.Wants(in) {
			out = append(out, r.Name)
		}
	}
	return out
}

// CheckReceivers returns an *intent.ValidationError when the intent's
// receivers list names a receiver that is not configured (a typo would
// otherwise be stored, skipped by every receiver and lost), with the
// configured names and the closest one; nil otherwise.
func (c *Config) CheckReceivers(in *intent.Intent) error {
	names := c.ReceiverNames()
	var problems []intent.FieldError
	for i, name := range in.Receivers {
		if slices.Contains(names, name) {
			continue
		}
		msg := fmt.Sprintf("unknown receiver %s: the configuration has %s", strconv.Quote(name), quoteList(names))
		if best, ok := suggest.Closest(name, names); ok {
			msg += fmt.Sprintf("; did you mean %q?", best)
		}
		problems = append(problems, intent.FieldError{Field: "receivers[" + strconv.Itoa(i) + "]", Problem: msg})
	}
	if len(problems) == 0 {
		return nil
	}
	return &intent.ValidationError{Errors: problems, ID: in.ID}
}

// Unrouted explains why an intent that passes CheckReceivers reaches no
// receiver, or returns "" when some receiver wants it.
func (c *Config) Unrouted(in *intent.Intent) string {
	if len(c.Recipients(in)) > 0 {
		return ""
	}
	if len(in.Receivers) > 0 {
		return fmt.Sprintf("none of the receivers it names (%s) requested type %s; it will be stored and delivered to no receiver (add the type to their events)", quoteList(in.Receivers), in.EventType)
	}
	return fmt.Sprintf("no configured receiver requested type %s; it will be stored and delivered to no receiver (add the type to a receiver's events)", in.EventType)
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
