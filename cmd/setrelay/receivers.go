package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/relay"
	"github.com/setrelay/setrelay/worker"
)

func newReceiversCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "receivers",
		Short: "Show the configured receivers' delivery state, and unblock a fixed one",
		Long: `A receiver is blocked when the relay's configuration for it is wrong (the token
endpoint rejects the client, the endpoint answers 404 or redirects, its
certificate does not match, the receiver rejects the key, issuer or audience
for several intents): its backlog is kept, nothing is dead-lettered, and one
process probes it with a backoff. 'status' shows each receiver's shared state
and the fix; 'unblock' asks the running relays to probe one now, after you
fixed it (client_secret_file and key files are re-read before each probe).`,
		Example: `  setrelay receivers status --config /etc/setrelay/config.yaml
  setrelay receivers unblock gov --config /etc/setrelay/config.yaml --nats-url nats://127.0.0.1:4222`,
	}
	cmd.AddCommand(newReceiversStatusCmd(), newReceiversUnblockCmd())
	return cmd
}

func newReceiversStatusCmd() *cobra.Command {
	var file, natsURL string
	cmd := &cobra.Command{
		Use:   "status --config FILE",
		Short: "Print each configured receiver's shared state (ok, paused or blocked) and what to fix",
		Long: `Print, for each receiver in the configuration, the state the running relays
share in the SETRELAY_RECEIVERS bucket: ok, paused (down: probed every
pause.probe_interval) or blocked (a configuration failure), since when, why,
and for a blocked one the setting to fix. The per-process view, with failing,
is the setrelay_receiver_state metric.`,
		Example: `  setrelay receivers status --config /etc/setrelay/config.yaml`,
		Args:    positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadStateConfig(file, natsURL)
			if err != nil {
				return err
			}
			nc, js, err := relay.Connect(cmd.Context(), cfg, nil)
			if err != nil {
				return err
			}
			defer nc.Close()
			out := cmd.OutOrStdout()
			for _, name := range cfg.ReceiverNames() {
				st, err := worker.SharedState(cmd.Context(), js, name)
				if err != nil {
					return fmt.Errorf("receiver %q: %w", name, err)
				}
				if st.State == "ok" {
					fmt.Fprintf(out, "%s\tok\n", name)
					continue
				}
				fmt.Fprintf(out, "%s\t%s since %s (%s)\n", name, st.State, st.Since.Format(time.RFC3339), st.Reason)
				if !st.Until.IsZero() && st.State == "paused" {
					fmt.Fprintf(out, "\tpaused until %s; probed every pause.probe_interval meanwhile\n", st.Until.Format(time.RFC3339))
				}
				if st.Fix != "" {
					fmt.Fprintf(out, "\tfix: %s\n", st.Fix)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "the relay's configuration file: its nats section says where the queue is, its receivers which names are valid (the receivers' credentials and endpoint variables are not needed)")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "NATS server URL(s), comma-separated; overrides NATS_URL and the configuration")
	return cmd
}

func newReceiversUnblockCmd() *cobra.Command {
	var file, natsURL string
	cmd := &cobra.Command{
		Use:   "unblock NAME --config FILE",
		Short: "Ask the running relays to probe a blocked receiver now",
		Long: `Ask every running relay to probe the blocked receiver NAME now rather than at
its next scheduled probe. One of them re-reads the receiver's secret and key
files, pushes one intent, and unblocks the receiver for all of them if it gets
through; if not, it stays blocked and the error line says why. A relay that
starts on a blocked receiver probes it at once, so after a restart this is
not needed.`,
		Example: `  setrelay receivers unblock gov --config /etc/setrelay/config.yaml`,
		Args:    positional(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadStateConfig(file, natsURL)
			if err != nil {
				return err
			}
			name := args[0]
			if !slices.Contains(cfg.ReceiverNames(), name) {
				return usageErrorf("receiver %q is not in %s (configured: %v)", name, file, cfg.ReceiverNames())
			}
			nc, js, err := relay.Connect(cmd.Context(), cfg, nil)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := worker.SharedState(cmd.Context(), js, name)
			if err != nil {
				return err
			}
			if err := worker.RequestProbe(cmd.Context(), js, name); err != nil {
				return err
			}
			if st.State != "blocked" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is not blocked (state %s); probe requested anyway\n", name, st.State)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "probe of %s requested; 'setrelay receivers status' shows whether it got through\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "the relay's configuration file: its nats section says where the queue is, its receivers which names are valid (the receivers' credentials and endpoint variables are not needed)")
	cmd.Flags().StringVar(&natsURL, "nats-url", "", "NATS server URL(s), comma-separated; overrides NATS_URL and the configuration")
	return cmd
}

// loadStateConfig loads --config for the receivers commands. They read and
// write the state bucket only, so, like the other queue tools, they load
// the file without the receivers' credentials and endpoint variables
// (config.QueueOnly): the operator who runs 'receivers unblock' after a fix
// need not have the receiver's client secret in their shell.
// natsURL, from --nats-url, overrides the file's nats.url and NATS_URL, as
// it does for the other queue tools.
func loadStateConfig(file, natsURL string) (*config.Config, error) {
	if file == "" {
		return nil, usageErrorf("--config is required: the relay's YAML configuration file (commented examples in configs/)")
	}
	cfg, err := config.Load(file, config.QueueOnly())
	if err != nil {
		return nil, err
	}
	if natsURL != "" {
		cfg.NATS.URL = natsURL
	}
	return cfg, nil
}
