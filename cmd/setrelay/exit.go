package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/tracing"
)

// Exit statuses. Scripts rely on 2 meaning "your input is wrong, retrying
// will not help" and 1 meaning "something failed while running".
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks a mistake in how a command was called (flags, arguments,
// input files): exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// positional wraps a cobra argument check so its complaint is a usage error.
// Cobra's complaint ("accepts 1 arg(s), received 0") does not say which
// argument is missing; the usage line does.
func positional(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageErrorf("%w\nUsage: %s\nRun '%s --help' for more.", err, cmd.UseLine(), cmd.CommandPath())
		}
		return nil
	}
}

// execute runs the command line and returns the exit status. It is main
// without the process: tests call it with their own streams.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var silent *silentError
	if !errors.As(err, &silent) {
		fmt.Fprintln(stderr, "setrelay: "+err.Error())
	}
	return exitCode(err)
}

// silentError carries an exit status for a failure the command has already
// reported itself (sign prints each validation problem on its own line).
type silentError struct {
	code int
	err  error
}

func (e *silentError) Error() string { return e.err.Error() }
func (e *silentError) Unwrap() error { return e.err }

// exitCode maps an error to the exit status: 2 for anything the caller can
// fix in their input (usage, configuration, intent), 1 otherwise.
func exitCode(err error) int {
	var (
		silent *silentError
		usage  *usageError
		cfg    *config.Error
		inv    *intent.ValidationError
	)
	switch {
	case errors.As(err, &silent):
		return silent.code
	case errors.As(err, &usage), errors.As(err, &cfg), errors.As(err, &inv), errors.Is(err, tracing.ErrEnvironment):
		return exitUsage
	case strings.HasPrefix(err.Error(), "unknown command"), strings.HasPrefix(err.Error(), "unknown flag"):
		// cobra reports unknown subcommands with a plain error.
		return exitUsage
	default:
		return exitFailure
	}
}
