package main

import (
	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
)

// newRootCmd builds the command tree. Each command lives in its own file
// and is added here, in the order `setrelay --help` lists them.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "setrelay",
		Short: "Deliver Security Event Tokens to Shared Signals receivers",
		Long: `setrelay reads event intents from NATS JetStream, turns each into an RFC 8417
Security Event Token (SET) signed with your key, and pushes it to every Shared
Signals Framework receiver that asked for it (RFC 8935), with at-least-once
delivery, retries with backoff, and a dead-letter stream for what cannot be
delivered.

Start with 'setrelay keys generate' for a signing key, 'setrelay sign' to see
the SET an intent becomes, and 'setrelay run --config FILE' to run the service
(configs/*.yaml are commented examples).`,
		Example: `  setrelay keys generate --alg RS256 --out key.pem
  setrelay sign --key key.pem --iss https://rp.example.gov.uk/ --aud https://receiver.example/ --decode intent.json
  setrelay run --config configs/local.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("log-level", "", "log level: debug, info, warn or error (default: the config's log.level, else info)")
	// Check --log-level before a command does any work, so a typo is a
	// usage error rather than a failure after loading a configuration.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		if l, _ := cmd.Flags().GetString("log-level"); l != "" {
			if _, err := zapcore.ParseLevel(l); err != nil {
				return usageErrorf("--log-level %q: use debug, info, warn or error", l)
			}
		}
		return nil
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageErrorf("%w\nRun '%s --help' for usage.", err, c.CommandPath())
	})
	root.AddCommand(
		newRunCmd(),
		newDemoCmd(),
		newProvisionCmd(),
		newPublishCmd(),
		newBackfillCmd(),
		newDLQCmd(),
		newStreamsCmd(),
		newSignCmd(),
		newKeysCmd(),
		newReceiverCmd(),
		newReceiversCmd(),
		newStatusCmd(),
		newSchemaCmd(),
		newBenchCmd(),
		newHealthcheckCmd(),
		newVersionCmd(),
	)
	return root
}
