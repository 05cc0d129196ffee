package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/setrelay/setrelay/internal/suggest"
	"github.com/setrelay/setrelay/queue"
)

func newDLQCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, replay and purge dead letters",
		Long: `Work with the dead-letter stream (SETRELAY_DLQ): the intents that could not be
delivered to a receiver, with the reason, the receiver's HTTP status, its
RFC 8935 err and description, a body excerpt and the attempts made.

Dead letters are identified by their sequence in SETRELAY_DLQ (the SEQ column
of 'dlq list'). Filters (--receiver, --reason, --since, --until) select them
for list, replay --all and purge; --since and --until take an RFC 3339 time
(2026-05-01T10:00:00Z) or a duration before now (90m, 24h).`,
		Example: `  setrelay dlq list --receiver govuk --since 24h
  setrelay dlq show 42
  setrelay dlq replay --all --receiver govuk --reason invalid_audience --dry-run
  setrelay dlq purge --reason invalid_intent --yes`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDLQListCmd(), newDLQShowCmd(), newDLQReplayCmd(), newDLQPurgeCmd())
	return cmd
}

// dlqFilterFlags are the filters shared by list, replay --all and purge.
type dlqFilterFlags struct {
	receiver, reason, since, until string
	limit                          int
}

func (ff *dlqFilterFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&ff.receiver, "receiver", "", "only this receiver's dead letters")
	f.StringVar(&ff.reason, "reason", "", "only this reason (http_5xx, invalid_audience, attempts_exhausted, invalid_intent ...)")
	f.StringVar(&ff.since, "since", "", "stored at or after: RFC 3339 time or a duration ago (24h)")
	f.StringVar(&ff.until, "until", "", "stored before: RFC 3339 time or a duration ago")
	f.IntVar(&ff.limit, "limit", 0, "at most this many (0: all)")
}

// filter turns the flags into a queue.Filter, relative times from now.
func (ff *dlqFilterFlags) filter(now time.Time) (queue.Filter, error) {
	f := queue.Filter{Receiver: ff.receiver, Reason: ff.reason, Limit: ff.limit}
	if ff.limit < 0 {
		return f, usageErrorf("--limit must not be negative")
	}
	var err error
	if f.Since, err = parseWhen(ff.since, now); err != nil {
		return f, usageErrorf("--since: %w", err)
	}
	if f.Until, err = parseWhen(ff.until, now); err != nil {
		return f, usageErrorf("--until: %w", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, usageErrorf("--since must be before --until")
	}
	return f, nil
}

func (ff *dlqFilterFlags) any() bool {
	return ff.receiver != "" || ff.reason != "" || ff.since != "" || ff.until != "" || ff.limit > 0
}

// parseWhen reads an RFC 3339 time or a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-05-01T10:00:00Z) nor a duration ago (24h)", s)
	}
	return now.Add(-d), nil
}

// dlqConnect connects for a dlq subcommand.
func dlqConnect(cmd *cobra.Command, qf *queueFlags) (*nats.Conn, *queue.DLQ, error) {
	log, err := consoleLogger(cmd)
	if err != nil {
		return nil, nil, err
	}
	nc, js, _, err := qf.connect(cmd.Context(), log)
	if err != nil {
		return nil, nil, err
	}
	return nc, queue.NewDLQ(js), nil
}

// noteReceiverWithoutDeadLetters explains, on stderr, a --receiver that
// has no dead letters and is not configured: a typo in the name otherwise
// looks exactly like a receiver with none ("no dead letters match"). It
// names the receivers that have dead letters, with a did-you-mean. A
// configured receiver without dead letters is normal and gets no note;
// nothing here changes the output or the exit status.
func noteReceiverWithoutDeadLetters(cmd *cobra.Command, nc *nats.Conn, qf *queueFlags, receiver string) {
	if receiver == "" {
		return
	}
	if qf.config != "" {
		if cfg, err := qf.loadedConfig(); err == nil && cfg != nil && slices.Contains(cfg.ReceiverNames(), receiver) {
			return
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, queue.DLQStream)
	if err != nil {
		return
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(queue.DLQSubjectPrefix+">"))
	if err != nil || info.State.Subjects[queue.DLQSubject(receiver)] > 0 {
		return
	}
	var names []string
	for subj := range info.State.Subjects {
		names = append(names, strings.TrimPrefix(subj, queue.DLQSubjectPrefix))
	}
	slices.Sort(names)
	msg := fmt.Sprintf("setrelay: note: no dead letters for receiver %q", receiver)
	if qf.config != "" {
		msg += ", and it is not in " + qf.config
	}
	if len(names) == 0 {
		msg += "; the dead-letter stream is empty"
	} else {
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = strconv.Quote(n)
		}
		msg += "; receivers with dead letters: " + strings.Join(quoted, ", ")
		if best, ok := suggest.Closest(receiver, names); ok {
			msg += fmt.Sprintf("; did you mean %q?", best)
		}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), msg)
}

// noMatch is what list, replay --all and purge print when the filters
// select nothing; scripts and tests look for it.
const noMatch = "no dead letters match"

// getDeadLetter fetches one dead letter by SEQ; a missing one is the
// caller's mistake (a wrong or stale SEQ), so a usage error.
func getDeadLetter(ctx context.Context, dlq *queue.DLQ, seq uint64) (queue.StoredDeadLetter, error) {
	sdl, err := dlq.Get(ctx, seq)
	if errors.Is(err, queue.ErrDeadLetterNotFound) {
		return sdl, usageErrorf("dead letter %d not found (replayed, purged, or never stored)", seq)
	}
	return sdl, err
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usageErrorf("%q is not a dead-letter sequence (the SEQ column of 'setrelay dlq list')", s)
	}
	return seq, nil
}

func newDLQListCmd() *cobra.Command {
	var (
		qf     queueFlags
		ff     dlqFilterFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [filters] [--json]",
		Short: "List dead letters, oldest first",
		Long: `List dead letters, oldest first, as a table or, with --json, as one JSON object
per line (the full dead letter, with seq and stored time), for jq.`,
		Example: `  setrelay dlq list --receiver govuk --since 24h
  setrelay dlq list --reason http_5xx --json | jq -r .intent_id`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			nc, dlq, err := dlqConnect(cmd, &qf)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			noteReceiverWithoutDeadLetters(cmd, nc, &qf, ff.receiver)
			return listDeadLetters(cmd.Context(), cmd.OutOrStdout(), dlq, f, asJSON)
		},
	}
	ff.register(cmd)
	qf.register(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line instead of a table")
	return cmd
}

func listDeadLetters(ctx context.Context, out io.Writer, dlq *queue.DLQ, f queue.Filter, asJSON bool) error {
	if asJSON {
		bw := bufio.NewWriter(out)
		enc := json.NewEncoder(bw)
		if err := dlq.Each(ctx, f, func(sdl queue.StoredDeadLetter) error { return enc.Encode(sdl) }); err != nil {
			return err
		}
		return bw.Flush()
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tRECEIVER\tREASON\tSTATUS\tERR\tATTEMPTS\tINTENT")
	n := 0
	err := dlq.Each(ctx, f, func(sdl queue.StoredDeadLetter) error {
		n++
		status := "-"
		if sdl.Status != 0 {
			status = strconv.Itoa(sdl.Status)
		}
		reason := sdl.Reason
		if sdl.DecodeError != "" {
			reason = "(unreadable)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", sdl.Seq, sdl.Stored.UTC().Format(time.RFC3339),
			cell(sdl.Receiver), cell(reason), status, cell(sdl.Err), sdl.Attempts, cell(sdl.IntentID))
		return nil
	})
	if err != nil {
		return err
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n == 0 {
		fmt.Fprintln(out, noMatch)
	}
	return nil
}

// cell keeps a table cell on one line and readable.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || isControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 60 {
		cut := 57
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// isControl reports the characters a terminal may act on rather than
// print: C0 (ESC starts escape sequences), DEL, C1 (U+009B is CSI) and the
// line and paragraph separators.
func isControl(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == 0x2028 || r == 0x2029
}

// terminalText renders text a receiver or producer chose for a terminal:
// control characters escaped as \n, \x1b or \u009b and invalid UTF-8 (a
// lone 0x9b byte is CSI to an 8-bit terminal) as U+FFFD, so a dead letter
// cannot retitle the window, clear the screen or forge lines. Newlines
// are kept where keepNewlines asks (a multi-line body); the escapes of the
// other characters are those of JSON strings, so an intent's JSON stays
// the same JSON.
func terminalText(s string, keepNewlines bool) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || (isControl(r) && !(keepNewlines && r == '\n')) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r == '\n' && keepNewlines:
			sb.WriteByte('\n')
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r == utf8.RuneError:
			sb.WriteRune(utf8.RuneError)
		case isControl(r):
			fmt.Fprintf(&sb, `\u%04x`, r)
		default:
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

func newDLQShowCmd() *cobra.Command {
	var (
		qf     queueFlags
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "show SEQ [--json]",
		Short: "Show one dead letter: intent, reason, receiver's answer, attempts",
		Long: `Show one dead letter: the receiver, the reason, the receiver's HTTP status,
its RFC 8935 err and description, an excerpt of its response body, the
attempts made with the first and last attempt times, validation problems for
an invalid intent, and the original intent exactly as it will be replayed.
SEQ is the SEQ column of 'setrelay dlq list'.`,
		Example: `  setrelay dlq show 42
  setrelay dlq show 42 --json | jq .intent`,
		Args: positional(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			nc, dlq, err := dlqConnect(cmd, &qf)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			sdl, err := getDeadLetter(cmd.Context(), dlq, seq)
			if err != nil {
				return err
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(sdl)
			}
			showDeadLetter(cmd.OutOrStdout(), sdl)
			// A dead letter of a receiver with on_dead_letter: hold may
			// be keeping its subject's later intents back.
			if hold, place, ok, err := dlq.HoldOf(cmd.Context(), sdl); err != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "hold: cannot tell whether it holds its subject: %v\n", err)
			} else if ok {
				fmt.Fprintf(cmd.OutOrStdout(), "hold: its subject is held for receiver %s (dead letter %d of %d held, since %s; the head is seq %d).\n"+
					"  Later intents about the subject are dead-lettered as %s. Replay the held dead letters in order\n"+
					"  ('setrelay dlq replay --receiver %s') or purge them to release the subject.\n",
					hold.Receiver, place+1, len(hold.DeadLetters), hold.Since.Format(time.RFC3339), hold.DeadLetters[0], queue.ReasonSubjectHeld, hold.Receiver)
			}
			return nil
		},
	}
	qf.register(cmd, false)
	cmd.Flags().BoolVar(&asJSON, "json", false, "the dead letter as JSON")
	return cmd
}

func showDeadLetter(out io.Writer, sdl queue.StoredDeadLetter) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, terminalText(v, false))
		}
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	row("seq", strconv.FormatUint(sdl.Seq, 10))
	row("stored", when(sdl.Stored))
	row("receiver", sdl.Receiver)
	row("reason", sdl.Reason)
	row("last failure", sdl.LastReason)
	if sdl.Status != 0 {
		row("status", strconv.Itoa(sdl.Status))
	}
	row("err", sdl.Err)
	row("description", sdl.Description)
	row("attempts", strconv.Itoa(sdl.Attempts))
	row("first attempt", when(sdl.FirstAttempt))
	row("last attempt", when(sdl.LastAttempt))
	row("intent id", sdl.IntentID)
	if sdl.StreamSeq != 0 {
		row("intent seq", strconv.FormatUint(sdl.StreamSeq, 10))
	}
	if sdl.ReplayOf != 0 {
		row("replay of", strconv.FormatUint(sdl.ReplayOf, 10))
	}
	row("traceparent", sdl.Traceparent) // the failed delivery's trace; a replay joins it
	row("unreadable", sdl.DecodeError)
	_ = tw.Flush()
	for _, e := range sdl.Errors {
		fmt.Fprintf(out, "problem: %s\n", terminalText(e, false))
	}
	if sdl.Body != "" {
		fmt.Fprintf(out, "body:\n  %s\n", strings.ReplaceAll(terminalText(sdl.Body, true), "\n", "\n  "))
	}
	if len(sdl.Intent) > 0 {
		// json.Indent, unlike MarshalIndent, keeps the bytes as stored
		// (no HTML escaping), so what is shown is what a replay sends.
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, sdl.Intent, "  ", "  "); err != nil {
			pretty.Reset()
			pretty.WriteString(strconv.Quote(string(sdl.Intent)))
		}
		fmt.Fprintf(out, "intent:\n  %s\n", terminalText(pretty.String(), true))
	}
}

func newDLQReplayCmd() *cobra.Command {
	var (
		qf     queueFlags
		ff     dlqFilterFlags
		all    bool
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "replay SEQ | --all [filters] [--dry-run]",
		Short: "Re-queue dead letters' intents for their receiver, once the fault is fixed",
		Long: `Re-queue a dead letter's original intent bytes for its receiver only (on
a replay subject addressed to that receiver alone; other receivers skip it). The
replayed SET carries a new jti, because its claims may differ after the fix
(a corrected audience, say); the replay records the dead letter's sequence
(Setrelay-Replay-Of), and if it fails again the new dead letter links back
to it. The dead letter is deleted only after the replay is stored, so a
failure in between leaves it in place (replaying it again is deduplicated).

With --all, every dead letter matching the filters is replayed, oldest first.
--dry-run lists what would be replayed and changes nothing.`,
		Example: `  setrelay dlq replay 42
  setrelay dlq replay --all --receiver govuk --reason invalid_audience --dry-run
  setrelay dlq replay --all --receiver govuk --since 2h`,
		Args: positional(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var seqs []uint64
			switch {
			case all && len(args) > 0:
				return usageErrorf("give a SEQ or --all with filters, not both")
			case !all && len(args) == 0:
				return usageErrorf("give the SEQ of the dead letter to replay, or --all with filters")
			case !all && ff.any():
				return usageErrorf("filters select dead letters for --all; with a SEQ they do nothing")
			case !all:
				seq, err := parseSeq(args[0])
				if err != nil {
					return err
				}
				seqs = []uint64{seq}
			}
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			nc, dlq, err := dlqConnect(cmd, &qf)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			noteReceiverWithoutDeadLetters(cmd, nc, &qf, ff.receiver)
			return replayDeadLetters(cmd.Context(), cmd.OutOrStdout(), dlq, seqs, all, f, dryRun)
		},
	}
	ff.register(cmd)
	qf.register(cmd, false)
	cmd.Flags().BoolVar(&all, "all", false, "replay every dead letter matching the filters")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "show what would be replayed; change nothing")
	return cmd
}

func replayDeadLetters(ctx context.Context, out io.Writer, dlq *queue.DLQ, seqs []uint64, all bool, f queue.Filter, dryRun bool) error {
	var targets []queue.StoredDeadLetter
	if all {
		// Collected first: replaying deletes dead letters, which must not
		// happen under the listing's feet.
		list, err := dlq.List(ctx, f)
		if err != nil {
			return err
		}
		targets = list
	} else {
		sdl, err := getDeadLetter(ctx, dlq, seqs[0])
		if err != nil {
			return err
		}
		targets = []queue.StoredDeadLetter{sdl}
	}
	if len(targets) == 0 {
		fmt.Fprintln(out, noMatch)
		return nil
	}
	var failed []error
	replayed := 0
	for _, sdl := range targets {
		if dryRun {
			fmt.Fprintf(out, "would replay seq=%d receiver=%s reason=%s intent=%s\n", sdl.Seq, terminalText(sdl.Receiver, false), terminalText(sdl.Reason, false), terminalText(sdl.IntentID, false))
			continue
		}
		res, err := dlq.Replay(ctx, sdl.Seq)
		if err != nil {
			fmt.Fprintf(out, "failed seq=%d receiver=%s intent=%s: %s\n", sdl.Seq, terminalText(sdl.Receiver, false), terminalText(sdl.IntentID, false), terminalText(err.Error(), false))
			failed = append(failed, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		replayed++
		note := ""
		if res.Duplicate {
			note = " (already replayed before; not queued again)"
		}
		fmt.Fprintf(out, "replayed seq=%d receiver=%s intent=%s as intent seq=%d%s\n", res.DLQSeq, terminalText(res.Receiver, false), terminalText(res.IntentID, false), res.Sequence, note)
	}
	if dryRun {
		fmt.Fprintf(out, "%d dead letters would be replayed (dry run: nothing changed)\n", len(targets))
		return nil
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d replays failed: %w", len(failed), len(targets), errors.Join(failed...))
	}
	if all {
		fmt.Fprintf(out, "%d dead letters replayed\n", replayed)
	}
	return nil
}

func newDLQPurgeCmd() *cobra.Command {
	var (
		qf  queueFlags
		ff  dlqFilterFlags
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "purge [filters] [--yes]",
		Short: "Delete dead letters matching the filters, after confirmation",
		Long: `Delete the dead letters matching the filters (all of them without filters).
This cannot be undone: the intents are not delivered to those receivers.
It asks for confirmation on the terminal unless --yes; without a terminal
(scripts, CI) --yes is required.`,
		Example: `  setrelay dlq purge --receiver old-receiver
  setrelay dlq purge --reason invalid_intent --until 720h --yes`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.filter(time.Now())
			if err != nil {
				return err
			}
			in := cmd.InOrStdin()
			if !yes && !isTerminal(in) {
				return usageErrorf("purge deletes dead letters for good: confirm with --yes (standard input is not a terminal to ask on)")
			}
			nc, dlq, err := dlqConnect(cmd, &qf)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			noteReceiverWithoutDeadLetters(cmd, nc, &qf, ff.receiver)
			if !yes {
				n := 0
				if err := dlq.Each(cmd.Context(), f, func(queue.StoredDeadLetter) error { n++; return nil }); err != nil {
					return err
				}
				if n == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), noMatch)
					return nil
				}
				if !confirm(cmd, fmt.Sprintf("Delete %d dead letters for good?", n)) {
					return nil
				}
			}
			n, err := dlq.Purge(cmd.Context(), f)
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters purged\n", n)
			return err
		},
	}
	ff.register(cmd)
	qf.register(cmd, false)
	cmd.Flags().BoolVar(&yes, "yes", false, "do not ask for confirmation")
	return cmd
}

// isTerminal reports whether r is an interactive terminal.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// confirm asks question on the terminal and reports whether the operator
// typed "yes". Any other answer is a decision, not a failure: it says
// that nothing was done, and the command exits 0.
func confirm(cmd *cobra.Command, question string) bool {
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "%s Type 'yes' to confirm: ", question)
	answer, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(answer)) == "yes" {
		return true
	}
	fmt.Fprintf(w, "not confirmed (answered %q): nothing was changed\n", strings.TrimSpace(answer))
	return false
}
