package main

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/internal/gctune"
	"github.com/setrelay/setrelay/relay"
)

func newRunCmd() *cobra.Command {
	var file string
	var insecureKeyPerms bool
	cmd := &cobra.Command{
		Use:   "run --config FILE",
		Short: "Run the relay: consume intents, sign SETs, push them to receivers",
		Long: `Run setrelay as a service.

It loads and validates the configuration (every problem is reported at once,
with its YAML path, and the exit status is 2), loads the signing keys, starts
an embedded NATS JetStream server when nats.url is empty (or connects to
nats.url; NATS_URL overrides it), creates the streams and one durable consumer
per receiver, and delivers: for every intent, one signed SET to every receiver
that requested its type, retried with backoff, dead-lettered when it cannot be
delivered.

The ops server (ops.listen, default 127.0.0.1:9464) serves /metrics,
/healthz, /readyz and /jwks.json. Logs are JSON lines on stderr (log.format:
console for a terminal), at log.level or --log-level.

On SIGTERM or SIGINT it stops pulling, lets in-flight pushes finish within
worker.grace_period (default 20s), hands back the rest, drains NATS and exits
0. A second signal exits at once (status 130); JetStream redelivers whatever
was not acknowledged. Run any number of processes against one NATS cluster:
they share the receivers' consumers.

Exit status: 0 after a graceful shutdown, 2 for a configuration mistake, 1
when it cannot start (NATS unreachable, a port in use) or fails while
running, 130 on a second signal.`,
		Example: `  setrelay run --config configs/local.yaml
  GOVUK_CLIENT_ID=... GOVUK_CLIENT_SECRET=... setrelay run --config configs/govuk.yaml
  NATS_URL=nats://nats-1:4222 setrelay run --config /etc/setrelay/config.yaml --log-level debug`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(file)
			if err != nil {
				return err
			}
			if insecureKeyPerms {
				for i := range cfg.Keys {
					cfg.Keys[i].InsecurePermissions = true
				}
			}
			log, err := newLogger(cmd.ErrOrStderr(), logLevel(cmd, cfg.Log.Level), cfg.Log.Format)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			// Pace the collector for a small, steadily allocating heap
			// (internal/gctune); GOGC or GOMEMLIMIT in the environment wins.
			gctx, stopTune := context.WithCancel(cmd.Context())
			defer stopTune()
			go gctune.Run(gctx, gctune.DefaultHeadroom, time.Second)
			err = relay.Run(cmd.Context(), cfg, log, prometheus.NewRegistry())
			// Key files are checked when loaded; name the file their
			// paths (keys[0].file) belong to.
			var ce *config.Error
			if errors.As(err, &ce) && ce.File == "" {
				ce.File = file
			}
			return err
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "configuration file (YAML; see configs/*.yaml)")
	cmd.Flags().BoolVar(&insecureKeyPerms, "insecure-key-permissions", false, insecureKeyPermsHelp)
	return cmd
}

// loadConfig is config.Load with a usage error when --config is missing.
func loadConfig(file string) (*config.Config, error) {
	if file == "" {
		return nil, usageErrorf("--config is required: the YAML configuration file (commented examples in configs/)")
	}
	return config.Load(file)
}
