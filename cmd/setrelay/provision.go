package main

import (
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/relay"
)

func newProvisionCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "provision --config FILE",
		Short: "Create or update the JetStream streams and the receivers' consumers, then exit",
		Long: `Create or update, idempotently, what setrelay needs in NATS JetStream: the
intents stream (SETRELAY_INTENTS), the dead-letter stream (SETRELAY_DLQ) and one
durable consumer per configured receiver, with nats.replicas replicas.

'setrelay run' does this by itself at start-up; this command is for
deployments that provision in a separate step (a one-shot job before the
workers start) and for adding a receiver before any worker knows about it.
Consumers of receivers no longer in the configuration are reported, not
deleted: they still hold those receivers' backlog.

It connects to nats.url (NATS_URL overrides it). With an empty nats.url it
expects a running 'setrelay run' with its embedded server on nats.listen.`,
		Example: `  setrelay provision --config configs/ssf.yaml
  NATS_URL=nats://nats-1:4222,nats://nats-2:4222 setrelay provision --config /etc/setrelay/config.yaml`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(file)
			if err != nil {
				return err
			}
			log, err := newLogger(cmd.ErrOrStderr(), logLevel(cmd, cfg.Log.Level), "console")
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			return relay.Provision(cmd.Context(), cfg, log)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (YAML; see configs/*.yaml)")
	return cmd
}
