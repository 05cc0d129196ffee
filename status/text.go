package status

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// WriteText prints the report as a table, one line per receiver, then the
// fix for each blocked receiver and the ops endpoints that did not answer.
// "-" is unknown (no ops endpoint answered) or none.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVER\tSTATE\tPENDING\tIN FLIGHT\tOLDEST\tDELIVERED 1m\tDEAD LETTERS (1h)\tTOKEN LEFT\tLAST ERROR")
	for _, x := range r.Receivers {
		state := x.State
		if x.Reason != "" {
			state += " (" + x.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%d (%d)\t%s\t%s\n",
			x.Name, state, x.Pending, x.InFlight, age(x.OldestPending), count(x.DeliveredLastMinute),
			x.DeadLetters, x.DeadLettersLastHour, left(x.TokenLeft), dash(x.LastError))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, x := range r.Receivers {
		switch {
		case x.State == StateBlocked && x.Fix != "":
			fmt.Fprintf(w, "%s is blocked since %s: %s; once fixed, run 'setrelay receivers unblock %s'\n",
				x.Name, x.Since.UTC().Format(time.RFC3339), x.Fix, x.Name)
		case x.State == StateNoConsumer:
			fmt.Fprintf(w, "%s gets nothing: %s\n", x.Name, x.Fix)
		}
	}
	for _, e := range r.OpsErrors {
		fmt.Fprintf(w, "warning: %s (failing state, deliveries and token lifetime are from the other relays only)\n", e)
	}
	return nil
}

func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func left(d *time.Duration) string {
	switch {
	case d == nil:
		return "-"
	case *d <= 0:
		return "expired"
	}
	return d.Round(time.Second).String()
}

func count(n *int64) string {
	if n == nil {
		return "-"
	}
	return strconv.FormatInt(*n, 10)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
