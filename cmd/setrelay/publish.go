package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/relay"
)

// queueFlags are how the producer and operator commands (publish, backfill,
// dlq) find NATS: --config for a deployment's file, --nats-url (or
// NATS_URL) for a bare server, and the local embedded server of a running
// 'setrelay run' when neither is given.
type queueFlags struct {
	config       string
	url          string
	allowPrivate bool

	loaded *config.Config // the --config file, once loaded
}

// loadedConfig loads --config once; nil without one.
func (qf *queueFlags) loadedConfig() (*config.Config, error) {
	if qf.config == "" || qf.loaded != nil {
		return qf.loaded, nil
	}
	// A producer needs the queue and the receivers' names, never their
	// credentials: it is not given them (see config.QueueOnly).
	cfg, err := config.Load(qf.config, config.QueueOnly())
	if err != nil {
		return nil, err
	}
	qf.loaded = cfg
	return cfg, nil
}

func (qf *queueFlags) register(cmd *cobra.Command, validates bool) {
	cmd.Flags().StringVar(&qf.config, "config", "", "configuration file: its nats section says where the queue is, its receivers which names are valid (optional; the receivers' credentials and endpoint variables are not needed)")
	cmd.Flags().StringVar(&qf.url, "nats-url", "", "NATS server URL(s), comma-separated; overrides NATS_URL and the configuration (default: a running 'setrelay run' on nats://"+queue.DefaultListen+")")
	if validates {
		cmd.Flags().BoolVar(&qf.allowPrivate, "allow-private-types", false, "accept event-type URIs outside CAEP/RISC/SSF (default: allowed when a configured receiver allows them)")
	}
}

// connectTimeout bounds the connection attempt, so a wrong URL fails fast
// instead of hanging an operator's terminal.
const connectTimeout = 10 * time.Second

// connect connects to NATS and returns the connection, a JetStream context
// and the validation options matching the configuration.
func (qf *queueFlags) connect(ctx context.Context, log *zap.Logger) (*nats.Conn, jetstream.JetStream, intent.Options, error) {
	opts, err := qf.intentOptions()
	if err != nil {
		return nil, nil, opts, err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	// A one-shot command's connection opening and closing are not news;
	// reconnects and errors still are.
	log = log.WithOptions(zap.IncreaseLevel(zap.WarnLevel))
	if qf.config != "" {
		cfg, err := qf.loadedConfig()
		if err != nil {
			return nil, nil, opts, err
		}
		if qf.url != "" {
			cfg.NATS.URL = qf.url
		}
		nc, js, err := relay.Connect(cctx, cfg, log)
		return nc, js, opts, err
	}
	qcfg := queue.Config{}
	qcfg.ApplyEnv()
	if qf.url != "" {
		qcfg.URL = qf.url
	}
	nc, err := queue.Connect(cctx, qcfg, log)
	if err != nil {
		if qcfg.URL == "" {
			return nil, nil, opts, fmt.Errorf("%w (no --nats-url, NATS_URL or --config, so a running 'setrelay run' with its embedded server on %s was expected)", err, queue.DefaultListen)
		}
		return nil, nil, opts, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, opts, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, opts, nil
}

// closeConn closes nc and waits (briefly) for its closed callback, which
// logs asynchronously: the command's output must be complete when it returns.
func closeConn(nc *nats.Conn) {
	done := make(chan struct{})
	orig := nc.Opts.ClosedCB
	nc.SetClosedHandler(func(c *nats.Conn) {
		if orig != nil {
			orig(c)
		}
		close(done)
	})
	nc.Close()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// intentOptions validates as the relay would: private event types are
// accepted when asked, or when some configured receiver accepts them (the
// receivers that did not ask for such a type skip it).
func (qf *queueFlags) intentOptions() (intent.Options, error) {
	opts := intent.Options{AllowPrivateTypes: qf.allowPrivate}
	if qf.config == "" || opts.AllowPrivateTypes {
		return opts, nil
	}
	cfg, err := qf.loadedConfig()
	if err != nil {
		return opts, err
	}
	opts.AllowPrivateTypes = cfg.AllowsPrivateTypes()
	return opts, nil
}

// maxPublishInput bounds what `setrelay publish` reads; bulk loads belong to
// `setrelay backfill`, which streams.
const maxPublishInput = 16 << 20

func newPublishCmd() *cobra.Command {
	var (
		qf   queueFlags
		tf   traceFlags
		file string
	)
	cmd := &cobra.Command{
		Use:   "publish [--file intent.json | intent.json | -]",
		Short: "Validate and publish intents (one JSON object, or NDJSON) to the queue",
		Long: `Validate and publish intents to a running setrelay's queue.

The input (--file or the argument; standard input when it is '-' or omitted) is one
intent as a JSON object, pretty-printed or not, or newline-delimited JSON with
one intent per line. Each intent is validated as the relay validates it, then
published with its id as the JetStream message id, so publishing the same id
again within the stream's duplicate window (nats.duplicate_window, default
1h) stores nothing new.

For every intent it prints one line:
  stored seq=N id=ID       stored at stream sequence N
  duplicate seq=N id=ID    already stored (same id within the window)
  invalid: PROBLEMS        not published; every problem, separated by '; '
prefixed with 'line N: ' for NDJSON input.

With --config, an intent whose receivers list names a receiver that is not
configured is invalid (with the configured names and a did-you-mean): the
relay would store it and deliver it nowhere. An intent that no receiver would
be sent (no receiver requested its type, or none of those it names did) is
stored with a warning on standard error.

Exit status: 0 when every intent was stored or a duplicate, 2 when any was
invalid (the valid ones are still published), 1 when publishing failed.
For files of many thousands of intents use 'setrelay backfill', which
streams, publishes asynchronously and can resume.`,
		Example: `  setrelay publish --file intent.json
  echo '{"id":"evt-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}' | setrelay publish
  setrelay publish --nats-url nats://nats:4222 - < intents.ndjson`,
		Args: positional(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				// 'publish intent.json' reads the file, as 'sign' does.
				if file != "" {
					return usageErrorf("give the input once: --file %s or the argument %s, not both", file, args[0])
				}
				file = args[0]
			}
			data, err := readPublishInput(cmd, file)
			if err != nil {
				return err
			}
			log, err := consoleLogger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			nc, js, opts, err := qf.connect(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			cfg, err := qf.loadedConfig()
			if err != nil {
				return err
			}
			ctx, finish, err := tf.start(cmd.Context(), log, "setrelay publish")
			if err != nil {
				return err
			}
			err = publishAll(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), queue.NewPublisher(js, opts), opts, cfg, data)
			finish(err)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "file holding one intent or NDJSON ('-' or omitted: standard input)")
	qf.register(cmd, true)
	tf.register(cmd)
	return cmd
}

func readPublishInput(cmd *cobra.Command, file string) ([]byte, error) {
	var r io.Reader = cmd.InOrStdin()
	name := "standard input"
	if file != "" && file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, usageErrorf("--file: %w", err)
		}
		defer f.Close()
		r, name = f, file
	}
	data, err := io.ReadAll(io.LimitReader(r, maxPublishInput+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if len(data) > maxPublishInput {
		return nil, usageErrorf("%s is over %d MiB: use 'setrelay backfill', which streams", name, maxPublishInput>>20)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, usageErrorf("%s is empty: give one intent (a JSON object) or NDJSON", name)
	}
	return data, nil
}

// publishAll publishes one intent (the whole input is one JSON value) or
// one per line, printing a verdict for each. With the configuration (cfg
// not nil) an intent naming a receiver that is not configured is invalid,
// and one that no receiver would be sent draws a warning on errw.
func publishAll(ctx context.Context, out, errw io.Writer, pub *queue.Publisher, opts intent.Options, cfg *config.Config, data []byte) error {
	type item struct {
		line int
		data []byte
	}
	var items []item
	if trimmed := bytes.TrimSpace(data); !isNDJSON(trimmed) {
		items = []item{{0, trimmed}}
	} else {
		for i, l := range bytes.Split(data, []byte("\n")) {
			if l = bytes.TrimSpace(l); len(l) > 0 {
				items = append(items, item{i + 1, l})
			}
		}
	}
	invalid := 0
	for _, it := range items {
		prefix := ""
		if it.line > 0 {
			prefix = "line " + strconv.Itoa(it.line) + ": "
		}
		in, err := intent.Decode(it.data, opts)
		if err == nil && cfg != nil {
			err = cfg.CheckReceivers(in)
		}
		if err != nil {
			invalid++
			fmt.Fprintf(out, "%sinvalid: %s\n", prefix, problems(err))
			continue
		}
		if cfg != nil {
			if why := cfg.Unrouted(in); why != "" {
				fmt.Fprintf(errw, "%swarning: intent %s: %s\n", prefix, in.ID, why)
			}
		}
		ack, err := pub.Publish(ctx, in)
		if err != nil {
			var ve *intent.ValidationError
			if errors.As(err, &ve) {
				invalid++
				fmt.Fprintf(out, "%sinvalid: %s\n", prefix, problems(err))
				continue
			}
			return fmt.Errorf("%spublish %q: %w", prefix, in.ID, err)
		}
		verdict := "stored"
		if ack.Duplicate {
			verdict = "duplicate"
		}
		fmt.Fprintf(out, "%s%s seq=%d id=%s\n", prefix, verdict, ack.Sequence, in.ID)
	}
	if invalid > 0 {
		return &silentError{code: exitUsage, err: fmt.Errorf("%d of %d intents invalid", invalid, len(items))}
	}
	return nil
}

// isNDJSON tells one document from NDJSON: the input is NDJSON when it is
// not one JSON value but its first line is. A broken pretty-printed intent
// is therefore reported once, as one invalid document, not line by line.
func isNDJSON(data []byte) bool {
	if json.Valid(data) {
		return false
	}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	return json.Valid(bytes.TrimSpace(first))
}

// problems renders a validation error's problems on one line.
func problems(err error) string {
	var ve *intent.ValidationError
	if errors.As(err, &ve) {
		return strings.Join(ve.Problems(), "; ")
	}
	return err.Error()
}
