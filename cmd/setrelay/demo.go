package main

import (
	"encoding/json"
	"errors"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/demo"
)

func newDemoCmd() *cobra.Command {
	var (
		opts   demo.Options
		asJSON bool

		keyConfig, keyID string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "See setrelay do its whole job in one process, then exit 0 if it all checks out",
		Long: `Run setrelay end to end in this process, with nothing else installed:

  - an embedded NATS JetStream in a temporary directory, on a random loopback
    port (never 4222, so it does not clash with anything running);
  - a freshly generated ES256 signing key, or with --key-config and --key-id
    a key of your configuration: a file, a PKCS#11 token or a KMS key;
  - the relay, assembled from a configuration as 'setrelay run' does;
  - the strict development receiver ('setrelay receiver'), with an OAuth
    client-credentials token endpoint, verifying every SET against the
    relay's own /jwks.json, and answering a few pushes with 500 or 429 so
    that retries show.

It publishes sample intents (the seed page's RISC account-disabled example,
CAEP session-revoked, CAEP credential-change and a GOV.UK One Login type)
and four bad ones: malformed JSON, an unknown event type, a missing subject,
and one the receiver refuses with 400. It shows progress, then a summary
(delivered, verified, retried, dead-lettered with reasons, SETs/s, publish
to 202 latency p50/p99) and one decoded SET.

Exit status 0 only if every good intent was delivered and verified by the
receiver and every bad one was dead-lettered for the expected reason; 1
otherwise.`,
		Example: `  go run ./cmd/setrelay demo
  setrelay demo --count 1000
  setrelay demo --keep        # then curl the printed /metrics and /jwks.json
  setrelay demo --json | jq .latency_p99_ms
  setrelay demo --key-config configs/govuk-kms.yaml --key-id rp-2026-11   # sign with a KMS or HSM key`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Count < 1 {
				return usageErrorf("--count must be at least 1 (got %d)", opts.Count)
			}
			if opts.FaultRate > 1 {
				return usageErrorf("--fault-rate must be at most 1 (got %v)", opts.FaultRate)
			}
			if opts.FaultRate == 0 {
				opts.FaultRate = -1 // demo.Options reads 0 as the default
			}
			// The demo's own output is the point; logs only when asked.
			log := zap.NewNop()
			if l, _ := cmd.Flags().GetString("log-level"); l != "" {
				var err error
				if log, err = newLogger(cmd.ErrOrStderr(), l, "console"); err != nil {
					return err
				}
				defer func() { _ = log.Sync() }()
			}
			opts.Log = log
			opts.Quiet = asJSON
			if keyConfig != "" || keyID != "" {
				kc, err := demoKey(keyConfig, keyID)
				if err != nil {
					return err
				}
				opts.Key = kc
			}
			if f, ok := cmd.OutOrStdout().(*os.File); ok {
				opts.TTY = term.IsTerminal(int(f.Fd()))
			}
			sum, err := demo.Run(cmd.Context(), opts, cmd.OutOrStdout())
			if asJSON && (err == nil || errors.Is(err, demo.ErrCheckFailed)) {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(sum); jerr != nil {
					return jerr
				}
			}
			if errors.Is(err, demo.ErrCheckFailed) {
				// The summary already lists what went wrong.
				return &silentError{code: exitFailure, err: err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Count, "count", demo.DefaultCount, "number of good intents to publish")
	f.BoolVar(&opts.Keep, "keep", false, "keep running after the summary, with the ops endpoints (/metrics, /healthz, /readyz, /jwks.json) up, until Ctrl-C")
	f.DurationVar(&opts.Timeout, "timeout", demo.DefaultTimeout, "how long to wait for every intent to be delivered or dead-lettered")
	f.Float64Var(&opts.FaultRate, "fault-rate", demo.DefaultFaults, "share of pushes the receiver answers with 500 or 429 (negative: none)")
	f.BoolVar(&asJSON, "json", false, "print only the summary, as JSON")
	f.StringVar(&keyConfig, "key-config", "", "sign with a key of this configuration instead of a generated file key: try a key in an HSM or KMS end to end (with --key-id)")
	f.StringVar(&keyID, "key-id", "", "the keys[].id of --key-config to sign with")
	return cmd
}

// demoKey finds the --key-id entry of --key-config.
func demoKey(file, id string) (*config.Key, error) {
	if file == "" || id == "" {
		return nil, usageErrorf("give --key-config and --key-id together: the configuration and the id of the key to sign with")
	}
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range cfg.Keys {
		if cfg.Keys[i].ID == id {
			return &cfg.Keys[i], nil
		}
		ids = append(ids, cfg.Keys[i].ID)
	}
	return nil, usageErrorf("%s has no key with id %q (it has: %s)", file, id, strings.Join(ids, ", "))
}
