package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/ssf"
)

func newStreamsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "streams",
		Short: "List, inspect, pause, disable and delete receiver-managed SSF streams",
		Long: `Work with the streams receivers created through the SSF API (ssf.enabled): the
registry in the SETRELAY_SSF_STREAMS bucket. Configured receivers are not
streams and do not appear here.

Status changes and deletions take effect in every 'setrelay run' process at
once, as if the receiver had made them: 'paused' holds events on the server,
'disabled' drops them, 'enabled' resumes. Pass the same --config as 'setrelay
run', so a re-created consumer gets your nats settings (replicas, ack wait).`,
		Example: `  setrelay streams list --config setrelay.yaml
  setrelay streams show 3f1c... --config setrelay.yaml
  setrelay streams status 3f1c... paused --reason "receiver asked by phone" --config setrelay.yaml
  setrelay streams delete 3f1c... --yes --config setrelay.yaml`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newStreamsListCmd(), newStreamsShowCmd(), newStreamsStatusCmd(), newStreamsDeleteCmd())
	return cmd
}

// streamsAdmin connects and opens the registry.
func streamsAdmin(cmd *cobra.Command, qf *queueFlags) (*ssf.Admin, func(), error) {
	log, err := consoleLogger(cmd)
	if err != nil {
		return nil, nil, err
	}
	nc, js, _, err := qf.connect(cmd.Context(), log)
	if err != nil {
		return nil, nil, err
	}
	var tcfg ssf.Config
	if qf.config != "" {
		cfg, err := loadConfig(qf.config)
		if err != nil {
			closeConn(nc)
			return nil, nil, err
		}
		tcfg = cfg.Transmitter()
	}
	a, err := ssf.NewAdmin(cmd.Context(), tcfg, js, log)
	if err != nil {
		closeConn(nc)
		return nil, nil, err
	}
	return a, func() { closeConn(nc) }, nil
}

func notFound(id string, err error) error {
	if errors.Is(err, ssf.ErrNotFound) {
		return usageErrorf("no stream %q (see 'setrelay streams list')", id)
	}
	return err
}

func newStreamsListCmd() *cobra.Command {
	var qf queueFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List every stream: id, client, method, status, events",
		Long: `List every receiver-managed stream, ordered by client: its id, the client
that created it, push or poll, its status, how many event types it is
delivered, and when it was created.`,
		Example: `  setrelay streams list --config setrelay.yaml`,
		Args:    positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, done, err := streamsAdmin(cmd, &qf)
			if err != nil {
				return err
			}
			defer done()
			all, err := a.List(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(all) == 0 {
				fmt.Fprintln(out, "no streams")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "STREAM\tCLIENT\tMETHOD\tSTATUS\tEVENTS\tCREATED")
			for _, st := range all {
				method := "push"
				if st.Delivery.Method == ssf.MethodPoll {
					method = "poll"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", st.ID, cell(st.Owner), method, st.Status, len(st.EventsDelivered), st.Created.UTC().Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	qf.register(cmd, false)
	return cmd
}

func newStreamsShowCmd() *cobra.Command {
	var qf queueFlags
	cmd := &cobra.Command{
		Use:   "show STREAM_ID",
		Short: "Show one stream as JSON (the receiver's authorization_header is never shown)",
		Long: `Show one stream as JSON: client, aud, events requested and delivered,
delivery (method and endpoint, and whether an authorization header is set),
status and reason, times, and whether it has subjects.`,
		Example: `  setrelay streams show 3f1c0d2e9a8b4c5d6e7f8091a2b3c4d5 --config setrelay.yaml | jq .status`,
		Args:    positional(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, done, err := streamsAdmin(cmd, &qf)
			if err != nil {
				return err
			}
			defer done()
			st, err := a.Get(cmd.Context(), args[0])
			if err != nil {
				return notFound(args[0], err)
			}
			view := map[string]any{
				"stream_id": st.ID, "client": st.Owner, "aud": st.Audience,
				"events_requested": st.EventsRequested, "events_delivered": st.EventsDelivered,
				"delivery":    map[string]any{"method": st.Delivery.Method, "endpoint_url": a.EndpointURL(st), "authorization_header_set": st.Delivery.AuthorizationHeader != ""},
				"description": st.Description, "status": st.Status, "reason": st.Reason,
				"created": st.Created, "updated": st.Updated, "has_subjects": st.HasSubjects,
			}
			if !st.LastVerified.IsZero() {
				view["last_verification"] = st.LastVerified
			}
			if st.Blocked != "" {
				// The worker holds the push stream back; the receiver
				// sees it as paused (package ssf, blocked.go).
				view["blocked"], view["blocked_since"] = st.Blocked, st.BlockedSince
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(view)
		},
	}
	qf.register(cmd, false)
	return cmd
}

func newStreamsStatusCmd() *cobra.Command {
	var (
		qf     queueFlags
		reason string
		wait   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status STREAM_ID [enabled|paused|disabled]",
		Short: "Show a stream's status, or set it",
		Long: `Without a status, print the stream's status and reason. With one, set it:
'paused' holds events until enabled; 'disabled' drops what is held and what
arrives until enabled again. The receiver is sent a Stream Updated event
(SSF 1.0 §8.1.5) with the status and reason: before a pause or disable
(waiting up to --notify-wait for it to be delivered), after an enable.`,
		Example: `  setrelay streams status 3f1c0d2e9a8b4c5d6e7f8091a2b3c4d5 --config setrelay.yaml
  setrelay streams status 3f1c0d2e9a8b4c5d6e7f8091a2b3c4d5 paused --reason "receiver maintenance" --config setrelay.yaml`,
		Args: positional(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 2 && args[1] != ssf.StatusEnabled && args[1] != ssf.StatusPaused && args[1] != ssf.StatusDisabled {
				return usageErrorf("status %q: use enabled, paused or disabled", args[1])
			}
			a, done, err := streamsAdmin(cmd, &qf)
			if err != nil {
				return err
			}
			defer done()
			var st *ssf.Stream
			if len(args) == 1 {
				st, err = a.Get(cmd.Context(), args[0])
			} else {
				st, err = a.SetStatus(cmd.Context(), args[0], args[1], reason, wait)
			}
			if err != nil {
				return notFound(args[0], err)
			}
			line := st.ID + " " + st.Status
			if st.Reason != "" {
				line += " (" + strings.ReplaceAll(st.Reason, "\n", " ") + ")"
			}
			if st.Blocked != "" {
				line += "; blocked by setrelay since " + st.BlockedSince.UTC().Format(time.RFC3339) + " (" + st.Blocked +
					"), so the receiver sees paused; `setrelay receivers unblock " + ssf.ReceiverName(st.ID) + "` probes now"
			}
			fmt.Fprintln(cmd.OutOrStdout(), line)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "the reason the receiver sees on the status endpoint and in the Stream Updated event")
	cmd.Flags().DurationVar(&wait, "notify-wait", ssf.NotifyWait, "before pausing or disabling, how long to wait for the receiver to take the Stream Updated event")
	qf.register(cmd, false)
	return cmd
}

func newStreamsDeleteCmd() *cobra.Command {
	var (
		qf  queueFlags
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "delete STREAM_ID --yes",
		Short: "Delete a stream, its consumer (and the events it held) and its subjects",
		Long: `Delete a stream as if its receiver had: the registry entry, the durable
consumer (dropping every event it still held) and its subjects. Every
'setrelay run' process stops pushing to it at once. There is no undo.`,
		Example: `  setrelay streams delete 3f1c0d2e9a8b4c5d6e7f8091a2b3c4d5 --yes --config setrelay.yaml`,
		Args:    positional(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usageErrorf("deleting stream %s drops the events it holds; add --yes to go ahead", args[0])
			}
			a, done, err := streamsAdmin(cmd, &qf)
			if err != nil {
				return err
			}
			defer done()
			if err := a.Delete(cmd.Context(), args[0]); err != nil {
				return notFound(args[0], err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "deleted stream", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")
	qf.register(cmd, false)
	return cmd
}
