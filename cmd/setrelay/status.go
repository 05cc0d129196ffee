package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/status"
)

func newStatusCmd() *cobra.Command {
	var (
		qf     queueFlags
		ops    []string
		asJSON bool
		watch  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Is every receiver healthy right now? One line per receiver; exit 1 when any is blocked or has no consumer",
		Long: `Print one line per receiver:

  STATE          ok, failing (pushes failing, not paused yet), paused (down,
                 probed) or blocked (a configuration failure), with the reason;
                 no_consumer for a configured receiver that has no consumer
                 yet (run 'setrelay provision'): it is sent nothing
  PENDING        intents the receiver's consumer has not delivered yet
  IN FLIGHT      delivered and not settled yet (being pushed, or waiting to retry)
  OLDEST         age of the oldest intent not yet settled for the receiver
  DELIVERED 1m   SETs the relays delivered in the last minute
  DEAD LETTERS   dead letters now stored, and in brackets those of the last hour
  TOKEN LEFT     the current access token's remaining lifetime
  LAST ERROR     the state's reason, or the latest dead letter's

It reads NATS (consumer info, the dead-letter stream, the SETRELAY_RECEIVERS
state bucket) and each relay's ops endpoint (--ops, default the config's
ops.listen). DELIVERED, TOKEN LEFT and the failing state come from the ops
endpoints only: '-' when none answered (a warning says which).

With --watch it prints the report again every interval, each under its
time, until interrupted (exit status 0); a report that cannot be collected
is a warning on stderr and the next interval tries again.

Exit status: 0 when no receiver is blocked or without a consumer, 1 when any
is (so scripts and probes can use it), 2 for bad flags or configuration.`,
		Example: `  setrelay status --config /etc/setrelay/config.yaml
  setrelay status --nats-url nats://nats:4222 --ops http://relay-1:9464 --ops http://relay-2:9464
  setrelay status --config config.yaml --json | jq '.receivers[] | select(.state != "ok")'
  setrelay status --config config.yaml --watch 5s`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch < 0 {
				return usageErrorf("--watch must not be negative")
			}
			opts := status.Options{Ops: ops}
			if qf.config != "" {
				cfg, err := qf.loadedConfig()
				if err != nil {
					return err
				}
				opts.Receivers = cfg.ReceiverNames()
				opts.Config = qf.config
				if len(ops) == 0 && cfg.Ops.Listen != "" {
					opts.Ops = []string{"http://" + dialable(cfg.Ops.Listen)}
				}
			}
			log, err := consoleLogger(cmd)
			if err != nil {
				return err
			}
			nc, js, _, err := qf.connect(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			out := cmd.OutOrStdout()
			collect := func(ctx context.Context) (status.Report, error) {
				ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				defer cancel()
				return status.Collect(ctx, js, opts)
			}
			if watch > 0 {
				return watchStatus(cmd.Context(), out, cmd.ErrOrStderr(), watch, collect, asJSON)
			}
			rep, err := collect(cmd.Context())
			if err != nil {
				return err
			}
			if err := printStatus(out, rep, asJSON); err != nil {
				return err
			}
			if rep.Blocked() {
				return &silentError{code: exitFailure, err: errors.New("a receiver is blocked")}
			}
			if rep.NoConsumer() {
				return &silentError{code: exitFailure, err: errors.New("a configured receiver has no consumer")}
			}
			return nil
		},
	}
	qf.register(cmd, false)
	cmd.Flags().StringArrayVar(&ops, "ops", nil, "a relay's ops endpoint, http://host:port (repeat for each relay; default: the config's ops.listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (durations in seconds)")
	cmd.Flags().DurationVar(&watch, "watch", 0, "print again every interval until interrupted (0: once)")
	return cmd
}

// watchStatus prints a report every interval, each under its time, until
// ctx is done (an interrupt), and then returns nil: watching ends by being
// stopped, not by failing. A report that cannot be collected (NATS
// reconnecting) is a warning line, and the next interval tries again.
func watchStatus(ctx context.Context, out, errOut io.Writer, every time.Duration,
	collect func(context.Context) (status.Report, error), asJSON bool) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rep, err := collect(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			fmt.Fprintf(errOut, "%s warning: %v (trying again in %s)\n", time.Now().UTC().Format(time.RFC3339), err, every)
		default:
			fmt.Fprintf(out, "\n%s\n", rep.At.Format(time.RFC3339))
			if err := printStatus(out, rep, asJSON); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func printStatus(out io.Writer, rep status.Report, asJSON bool) error {
	if !asJSON {
		return rep.WriteText(out)
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// dialable turns a listen address into one to connect to: an unspecified
// host (":9464", "0.0.0.0:9464") means this machine.
func dialable(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
