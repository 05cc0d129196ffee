package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/receiver"
)

// maxCheckLine bounds one line of a --check file: a SET larger than the
// receiver's body limit is rejected anyway, and an unbounded line would let
// one bad file take all memory.
const maxCheckLine = 1 << 20

// runReceiverCheck is `setrelay receiver --check FILE`: the receiver's
// checks, offline, one verdict per SET.
func runReceiverCheck(cmd *cobra.Command, c receiver.Config, file string, jsonOut bool) error {
	// No HTTP, so no bearer token; the JWS and claims rules all apply.
	c.NoAuth, c.Quiet = true, true
	c.ClientID, c.ClientSecret = "", ""
	log, err := consoleLogger(cmd)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	rcv, err := receiver.New(c, log.Named("receiver"))
	if err != nil {
		return usageErrorf("%w", err)
	}
	var in io.Reader = cmd.InOrStdin()
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return usageErrorf("--check: %w", err)
		}
		defer f.Close()
		in = f
	}
	out := cmd.OutOrStdout()
	enc := json.NewEncoder(out)
	var total, accepted, warned, rejected int
	r := bufio.NewReaderSize(in, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readBoundedLine(r, maxCheckLine)
		if errors.Is(err, io.EOF) && line == "" && !tooLong {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("--check %s: line %d: %w", file, lineNo, err)
		}
		line = strings.TrimSpace(line)
		if !tooLong && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		total++
		var v receiver.Verdict
		if tooLong {
			v = receiver.Verdict{Status: 400, Err: receiver.ErrInvalidRequest,
				Description: fmt.Sprintf("%s: the line is longer than %d bytes", receiver.VBodyTooLarge, maxCheckLine),
				Violations:  []receiver.Finding{{Kind: receiver.VBodyTooLarge}}}
		} else {
			v = rcv.Check(cmd.Context(), line)
		}
		switch {
		case v.Status == 503:
			return fmt.Errorf("--check: line %d: cannot get the verification keys: %s", lineNo, v.Description)
		case v.Accepted():
			accepted++
			if len(v.Warnings) > 0 {
				warned++
			}
		default:
			rejected++
		}
		var werr error
		if jsonOut {
			werr = enc.Encode(struct {
				Line int `json:"line"`
				receiver.Verdict
			}{lineNo, v})
		} else {
			_, werr = fmt.Fprintln(out, verdictText(lineNo, v))
		}
		if werr != nil {
			return werr
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	summary := fmt.Sprintf("%d SET%s: %d accepted (%d with warnings), %d rejected", total, plural(total), accepted, warned, rejected)
	if !jsonOut {
		if _, err := fmt.Fprintln(out, summary); err != nil {
			return err
		}
	}
	if rejected > 0 {
		return &silentError{code: exitFailure, err: errors.New(summary)}
	}
	return nil
}

// verdictText is one verdict as a line (or a few) for people.
func verdictText(line int, v receiver.Verdict) string {
	var b strings.Builder
	switch {
	case v.Accepted() && v.Duplicate:
		fmt.Fprintf(&b, "line %d: accepted (identical retransmission of an earlier SET) jti=%s", line, v.JTI)
	case v.Accepted():
		fmt.Fprintf(&b, "line %d: accepted jti=%s events=%s", line, v.JTI, strings.Join(v.Events, ","))
	default:
		fmt.Fprintf(&b, "line %d: REJECTED %d %s", line, v.Status, v.Err)
		if v.JTI != "" {
			fmt.Fprintf(&b, " jti=%s", v.JTI)
		}
		for _, f := range v.Violations {
			fmt.Fprintf(&b, "\n  - %s", f.Description)
		}
		if len(v.Violations) == 0 && v.Description != "" {
			fmt.Fprintf(&b, "\n  - %s", v.Description)
		}
		return b.String()
	}
	for _, w := range v.Warnings {
		fmt.Fprintf(&b, "\n  warning: %s", w.Description)
	}
	return b.String()
}

// readBoundedLine reads one line without its newline, keeping at most max
// bytes; tooLong says the rest was discarded. err is io.EOF at the end.
func readBoundedLine(r *bufio.Reader, max int) (line string, tooLong bool, err error) {
	var b []byte
	for {
		chunk, isPrefix, rerr := r.ReadLine()
		if len(b)+len(chunk) > max {
			tooLong = true
		} else {
			b = append(b, chunk...)
		}
		if rerr != nil {
			return string(b), tooLong, rerr
		}
		if !isPrefix {
			return string(b), tooLong, nil
		}
	}
}
