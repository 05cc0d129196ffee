package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/setrelay/setrelay/backfill"
)

// exitInterrupted is the conventional status of a process stopped by SIGINT.
const exitInterrupted = 130

func newBackfillCmd() *cobra.Command {
	var (
		qf            queueFlags
		tf            traceFlags
		opts          backfill.Options
		progressEvery time.Duration
	)
	cmd := &cobra.Command{
		Use:   "backfill FILE.ndjson | -",
		Short: "Stream a file of intents (NDJSON) into the queue; resumable",
		Long: `Publish a file of intents, one JSON object per line, for batch backfills of
millions of intents.

The file is streamed, never loaded whole. Each line is validated as the relay
validates it; valid intents are published asynchronously with at most
--window awaiting their acks, at most --rate per second. Invalid lines (bad
JSON, failed validation, longer than the 64 KiB intent limit) never stop the
run: they are written, with their line numbers and every problem, to the
rejects file (--rejects, default FILE.rejects.ndjson), one JSON object per
line: {"line":N,"id":"...","errors":["..."]}. With --config, an intent naming
a receiver that is not configured is rejected too.

A checkpoint (--checkpoint, default FILE.checkpoint) is written every second
and at the end, atomically. It records the byte offset and line number before
the lowest line whose publish JetStream has not yet acknowledged, so that
--resume continues from there after Ctrl-C, a crash or a failed publish.
Ctrl-C stops reading, waits (up to 30s) for the acks in flight, writes the
checkpoint and prints a summary; a second Ctrl-C exits at once, leaving the
last checkpoint saved, which is still valid.

Re-publishing is safe: every intent is published with its id as the message
id, and JetStream drops an id it already stored within the stream's
duplicate window (nats.duplicate_window, default 1h). Resuming re-sends at
most a window of intents, which are acknowledged as duplicates. Beyond the
duplicate window, a re-run stores the intents again and receivers get each
SET a second time with the SAME jti (it is derived from the intent id and the
receiver), which RFC 8935 receivers treat as a duplicate of the SET they
already accepted; receivers that do not deduplicate by jti would act twice.

Progress goes to stderr: a progress bar (count, rate, ETA, invalid so far)
when it is a terminal, a plain line every --progress-every otherwise.

Exit status: 0 when every line was published; 2 when some lines were
rejected (the others were published), by this run or, with --resume, by the
runs it continues; 1 when publishing failed (resume after
fixing the cause); 130 when interrupted (resume with --resume).`,
		Example: `  setrelay backfill --dry-run users.ndjson
  setrelay backfill --rate 500 users.ndjson
  setrelay backfill --resume users.ndjson
  zcat export.ndjson.gz | setrelay backfill --checkpoint export.checkpoint --rejects export.rejects.ndjson -`,
		Args: positional(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Window < 1 {
				return usageErrorf("--window must be at least 1")
			}
			if opts.Rate < 0 {
				return usageErrorf("--rate must not be negative")
			}
			name := args[0]
			src := backfill.Source{Name: name, Size: -1}
			if name == "-" {
				src.R = cmd.InOrStdin()
				if opts.Resume && opts.Checkpoint == "" {
					return usageErrorf("--resume with standard input needs --checkpoint")
				}
				if opts.Rejects == "" {
					opts.Rejects = "stdin.rejects.ndjson"
				}
			} else {
				f, err := os.Open(name)
				if err != nil {
					return usageErrorf("%w", err)
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
					src.Size = fi.Size()
				}
				src.R = f
				if opts.Checkpoint == "" {
					opts.Checkpoint = name + ".checkpoint"
				}
				if opts.Rejects == "" {
					opts.Rejects = name + ".rejects.ndjson"
				}
			}
			log, err := consoleLogger(cmd)
			if err != nil {
				return err
			}
			defer func() { _ = log.Sync() }()
			opts.Log = log
			opts.ProgressEvery = progressEvery
			opts.Progress = cmd.ErrOrStderr()
			if f, ok := opts.Progress.(*os.File); ok {
				opts.Terminal = term.IsTerminal(int(f.Fd()))
			}

			cfg, err := qf.loadedConfig()
			if err != nil {
				return err
			}
			if cfg != nil {
				// A receiver name that is not configured is a typo: the
				// relay would store the intent and deliver it nowhere.
				opts.Check = cfg.CheckReceivers
			}
			var sum backfill.Summary
			if opts.DryRun {
				iopts, err := qf.intentOptions()
				if err != nil {
					return err
				}
				opts.Intent = iopts
				sum, err = backfill.Run(cmd.Context(), nil, src, opts)
				return backfillResult(cmd, opts.Rejects, sum, err)
			}
			nc, _, iopts, err := qf.connect(cmd.Context(), log)
			if err != nil {
				return err
			}
			defer closeConn(nc)
			opts.Intent = iopts
			ctx, finish, err := tf.start(cmd.Context(), log, "setrelay backfill")
			if err != nil {
				return err
			}
			sum, err = backfill.Run(ctx, nc, src, opts)
			finish(err)
			return backfillResult(cmd, opts.Rejects, sum, err)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opts.Window, "window", backfill.DefaultWindow, "most publishes awaiting their acks at once")
	f.Float64Var(&opts.Rate, "rate", 0, "most intents published per second (0: unlimited)")
	f.BoolVar(&opts.DryRun, "dry-run", false, "validate and write the rejects file only; publish nothing, write no checkpoint")
	f.BoolVar(&opts.Resume, "resume", false, "continue from the checkpoint (from the start when there is none yet)")
	f.StringVar(&opts.Checkpoint, "checkpoint", "", "checkpoint file (default FILE.checkpoint; none for '-' unless given)")
	f.StringVar(&opts.Rejects, "rejects", "", "rejects file, JSON lines {line, id, errors} (default FILE.rejects.ndjson)")
	f.DurationVar(&progressEvery, "progress-every", backfill.DefaultProgressEvery, "interval of the plain progress lines when stderr is not a terminal")
	qf.register(cmd, true)
	tf.register(cmd)
	return cmd
}

// backfillResult prints the summary and maps the outcome to the exit status.
func backfillResult(cmd *cobra.Command, rejects string, sum backfill.Summary, err error) error {
	if sum.Read > 0 || sum.Checkpoint.Line > 0 || err == nil {
		fmt.Fprintln(cmd.OutOrStdout(), sum.String())
	}
	// A resumed run continues earlier ones: lines they rejected are still
	// rejected (the rejects file keeps them, the checkpoint counts them), so
	// they count for the exit status and the pointer to the rejects file,
	// or a script resuming until success would never look at them.
	invalid := sum.Invalid
	if sum.StartLine > 0 && sum.Checkpoint.Invalid > invalid {
		invalid = sum.Checkpoint.Invalid
	}
	switch {
	case invalid > sum.Invalid:
		fmt.Fprintf(cmd.OutOrStdout(), "%d invalid lines (%d in this run, the others before it was resumed): see %s\n", invalid, sum.Invalid, rejects)
	case invalid > 0:
		fmt.Fprintf(cmd.OutOrStdout(), "%d invalid lines: see %s\n", invalid, rejects)
	}
	switch {
	case errors.Is(err, backfill.ErrInterrupted):
		next := "; continue with --resume"
		if sum.CheckpointFile == "" {
			next = "; there is nothing to resume from: send the input again with --checkpoint FILE (lines already stored count as duplicates within nats.duplicate_window)"
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "setrelay: "+err.Error()+next)
		return &silentError{code: exitInterrupted, err: err}
	case err != nil:
		return err
	case invalid > 0:
		return &silentError{code: exitUsage, err: fmt.Errorf("%d lines rejected", invalid)}
	}
	return nil
}
