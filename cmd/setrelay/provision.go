package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
)

func newProvisionCmd() *cobra.Command {
	var (
		file, natsURL string
		prune, yes    bool
	)
	cmd := &cobra.Command{
		Use:   "provision --config FILE [--prune [--yes]]",
		Short: "Create or update the JetStream streams and the receivers' consumers, then exit",
		Long: `Create or update, idempotently, what setrelay needs in NATS JetStream: the
intents stream (SETRELAY_INTENTS), the dead-letter stream (SETRELAY_DLQ) and one
durable consumer per configured receiver, with nats.replicas replicas.

'setrelay run' does this by itself at start-up; this command is for
deployments that provision in a separate step (a one-shot job before the
workers start) and for adding a receiver before any worker knows about it.
Consumers of receivers no longer in the configuration are reported, not
deleted: they still hold those receivers' backlog.

--prune lists each consumer whose receiver is gone (rcv_<name> with no
receiver <name> in the configuration) with the intents it still holds, and
deletes them after you type 'yes'. The intents stream keeps a message until
every consumer interested in it has acknowledged it, so an orphaned consumer
holds every intent published since its receiver was removed; once it is
deleted, the stream shrinks to what the configured receivers still need.
The orphan's pending intents are not delivered to its receiver: run it only
when the receiver is gone for good. A consumer a running relay is still
pulling from is not deleted (its configuration still has the receiver):
roll the new configuration out first. Without a terminal to ask on, --yes is
required.

It connects to nats.url (NATS_URL, then --nats-url, override it). With an
empty nats.url it expects a running 'setrelay run' with its embedded server
on nats.listen.`,
		Example: `  setrelay provision --config configs/ssf.yaml
  setrelay provision --config configs/ssf.yaml --prune
  NATS_URL=nats://nats-1:4222,nats://nats-2:4222 setrelay provision --config /etc/setrelay/config.yaml --prune --yes`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if yes && !prune {
				return usageErrorf("--yes confirms --prune; give --prune too")
			}
			cfg, err := loadConfig(file)
			if err != nil {
				return err
			}
			if natsURL != "" {
				cfg.NATS.URL = natsURL
			}
			log, err := newLogger(cmd.ErrOrStderr(), logLevel(cmd, cfg.Log.Level), "console")
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			// Provision first even when pruning: the configured receivers'
			// consumers must exist before an orphan goes, or intents that
			// only the orphan still held would be dropped for them too.
			if err := relay.Provision(cmd.Context(), cfg, log); err != nil {
				return err
			}
			if !prune {
				return nil
			}
			return pruneOrphans(cmd, cfg, yes)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (YAML; see configs/*.yaml)")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "NATS server URL(s), comma-separated; overrides NATS_URL and the configuration")
	cmd.Flags().BoolVar(&prune, "prune", false, "list the consumers of receivers no longer configured, and delete them after confirmation")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --prune: delete without asking (for scripts)")
	return cmd
}

// pruneTimeout bounds the listing and deleting of orphaned consumers.
const pruneTimeout = time.Minute

// refuseServed fails when a relay is pulling from one of the orphans: a
// receiver missing from this file but still in the running relays' (a new
// file not rolled out yet, or the wrong file). Deleting its consumer would
// stop its deliveries under those relays. The relays keep a pull request
// open on each consumer they serve, which consumer info counts.
func refuseServed(ctx context.Context, js jetstream.JetStream, cfg *config.Config, orphans []queue.Orphan) error {
	var served []string
	for _, o := range orphans {
		c, err := js.Consumer(ctx, queue.IntentStream, o.Consumer)
		if err != nil {
			continue // gone meanwhile: nothing to delete
		}
		if ci, err := c.Info(ctx); err == nil && ci.NumWaiting > 0 {
			served = append(served, fmt.Sprintf("%s (receiver %q)", o.Consumer, o.Receiver))
		}
	}
	if len(served) == 0 {
		return nil
	}
	return fmt.Errorf("not deleting: a running relay is still pulling from %s, so its configuration still has that receiver; "+
		"roll out %s to every relay (or stop the ones that serve it) first, then run the prune again", strings.Join(served, ", "), cfg.Source)
}

// pruneOrphans lists the orphaned receiver consumers with their pending
// counts and deletes them once confirmed.
func pruneOrphans(cmd *cobra.Command, cfg *config.Config, yes bool) error {
	ctx, cancel := context.WithTimeout(cmd.Context(), pruneTimeout)
	defer cancel()
	nc, js, err := relay.Connect(ctx, cfg, nil)
	if err != nil {
		return err
	}
	defer closeConn(nc)
	orphans, err := relay.Orphans(ctx, js, cfg)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	if len(orphans) == 0 {
		fmt.Fprintln(out, "no consumers of removed receivers: nothing to prune")
		return nil
	}
	if err := refuseServed(ctx, js, cfg, orphans); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONSUMER\tRECEIVER\tPENDING")
	for _, o := range orphans {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", o.Consumer, o.Receiver, o.Pending)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !yes {
		if !isTerminal(cmd.InOrStdin()) {
			return usageErrorf("not deleting: standard input is not a terminal to confirm on; run again with --yes to delete the %d consumer%s above (their pending intents are not delivered anywhere)", len(orphans), plural(len(orphans)))
		}
		if !confirm(cmd, fmt.Sprintf("Delete these %d consumer%s? Their pending intents will not be delivered.", len(orphans), plural(len(orphans)))) {
			return nil
		}
	}
	for _, o := range orphans {
		if err := queue.DeleteOrphan(ctx, js, o.Consumer); err != nil {
			return err
		}
		fmt.Fprintf(out, "deleted %s (receiver %q, %d pending intents released)\n", o.Consumer, o.Receiver, o.Pending)
	}
	return nil
}
