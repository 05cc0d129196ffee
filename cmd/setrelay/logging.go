package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger builds the process logger on w (stderr): JSON for the service,
// where logs are shipped and parsed, and a console encoder for the one-shot
// commands a person reads.
func newLogger(w io.Writer, level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, usageErrorf("--log-level: %w (use debug, info, warn or error)", err)
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	default:
		return nil, fmt.Errorf("log format %q: use json or console", format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}

// logLevel is the --log-level flag, or def when it is not given.
func logLevel(cmd *cobra.Command, def string) string {
	if l, _ := cmd.Flags().GetString("log-level"); l != "" {
		return l
	}
	if def == "" {
		return "info"
	}
	return def
}

// consoleLogger is the logger of the one-shot commands.
func consoleLogger(cmd *cobra.Command) (*zap.Logger, error) {
	return newLogger(cmd.ErrOrStderr(), logLevel(cmd, "info"), "console")
}
