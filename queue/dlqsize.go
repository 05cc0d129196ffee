package queue

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/setrelay/setrelay/intent"
)

// ErrDeadLetterTooLarge is returned when a dead letter cannot be made to fit
// the connection's maximum payload even with every trimmable field cut. It
// is permanent: publishing the same record again cannot succeed.
var ErrDeadLetterTooLarge = errors.New("queue: dead letter does not fit the maximum payload even when trimmed")

// Trimming limits, see FitDeadLetter.
const (
	trimErrorsKept    = 10   // validation problems kept at step 1
	trimTextLong      = 1024 // bytes of body and description kept at step 2
	trimTextShort     = 256  // bytes of body and description kept at step 5
	intentExcerptSize = 200  // bytes of a dropped intent quoted in the description
	// headerSlack covers the NATS header framing beyond the header
	// values themselves ("NATS/1.0\r\n", separators, the final CRLF) and
	// headers the client may add.
	headerSlack = 256
)

// payloadBudget is how many bytes of data a message with these headers may
// carry on nc: the server's max_payload counts headers and data together.
func payloadBudget(nc *nats.Conn, h nats.Header) int {
	if nc == nil {
		return 0 // unknown: FitDeadLetter does not trim
	}
	n := int(nc.MaxPayload()) - headerSlack
	for k, vs := range h {
		for _, v := range vs {
			n -= len(k) + len(v) + 4
		}
	}
	return n
}

// FitDeadLetter encodes dl in at most budget bytes (no limit when budget <=
// 0). A dead letter normally fits with room to spare; one that does not
// (an intent near the payload limit carried base64-encoded, a huge error
// list) is trimmed, least useful first, re-encoding after each step until
// it fits:
//
//  1. errors: only the first 10 validation problems are kept.
//  2. body and description: cut to 1 KiB each.
//  3. intent: the bytes are dropped; intent_size keeps their length and the
//     description their first 200 bytes. The dead letter can no longer be
//     replayed, only read: intents large enough for this are invalid anyway
//     (over intent.MaxSize), or nearly so.
//  4. errors: dropped.
//  5. body and description: cut to 256 bytes each.
//
// Receiver, reason, last_reason, status, err, attempts, the times,
// stream_seq, intent_id and replay_of are never trimmed: they say what
// happened and let the record be found. Every step taken is named in
// Trimmed. It returns the encoding and the dead letter it encodes, or
// ErrDeadLetterTooLarge.
func FitDeadLetter(dl DeadLetter, budget int) ([]byte, DeadLetter, error) {
	data, err := json.Marshal(dl)
	if err != nil || budget <= 0 || len(data) <= budget {
		return data, dl, err
	}
	steps := []struct {
		name  string
		apply func(*DeadLetter) bool // reports whether it changed anything
	}{
		{"errors", func(d *DeadLetter) bool { return keepErrors(d, trimErrorsKept) }},
		{"body", func(d *DeadLetter) bool { return cutText(&d.Body, trimTextLong) }},
		{"description", func(d *DeadLetter) bool { return cutText(&d.Description, trimTextLong) }},
		{"intent", dropIntent},
		{"errors", func(d *DeadLetter) bool { return keepErrors(d, 0) }},
		{"body", func(d *DeadLetter) bool { return cutText(&d.Body, trimTextShort) }},
		{"description", func(d *DeadLetter) bool { return cutText(&d.Description, trimTextShort) }},
	}
	for _, s := range steps {
		if !s.apply(&dl) {
			continue
		}
		if !containsString(dl.Trimmed, s.name) {
			dl.Trimmed = append(dl.Trimmed, s.name)
		}
		if data, err = json.Marshal(dl); err != nil {
			return nil, dl, err
		}
		if len(data) <= budget {
			return data, dl, nil
		}
	}
	return nil, dl, fmt.Errorf("%w: %d bytes, budget %d (receiver %q, intent %q)", ErrDeadLetterTooLarge, len(data), budget, dl.Receiver, dl.IntentID)
}

func keepErrors(d *DeadLetter, n int) bool {
	if len(d.Errors) <= n {
		return false
	}
	cut := len(d.Errors) - n
	kept := append([]string(nil), d.Errors[:n]...)
	if n > 0 {
		kept = append(kept, strconv.Itoa(cut)+" more problems not kept (dead letter size limit)")
	}
	d.Errors = kept
	return true
}

func cutText(s *string, n int) bool {
	if len(*s) <= n {
		return false
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart((*s)[cut]) {
		cut--
	}
	*s = (*s)[:cut] + "..."
	return true
}

func dropIntent(d *DeadLetter) bool {
	if len(d.Intent) == 0 {
		return false
	}
	d.IntentSize = len(d.Intent)
	excerpt := d.Intent
	if len(excerpt) > intentExcerptSize {
		excerpt = excerpt[:intentExcerptSize]
	}
	note := fmt.Sprintf("the %d intent bytes are not kept: too large for a dead letter; they start %s", len(d.Intent), printable(excerpt))
	if len(d.Intent) > intent.MaxSize {
		note += fmt.Sprintf(" (over the %d-byte intent limit, so it could not be replayed anyway)", intent.MaxSize)
	}
	if d.Description == "" {
		d.Description = note
	} else {
		d.Description += " (" + note + ")"
	}
	d.Intent = nil
	return true
}

// printable renders bytes for a message: invalid UTF-8 as U+FFFD and
// control characters escaped, so an excerpt stays on one line.
func printable(b []byte) string {
	var sb strings.Builder
	for _, r := range strings.ToValidUTF8(string(b), "\uFFFD") {
		switch {
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&sb, `\x%02x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
