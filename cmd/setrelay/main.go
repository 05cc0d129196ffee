// Command setrelay delivers Security Event Tokens to Shared Signals
// receivers. See `setrelay --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go exitOnSecondSignal(ctx)
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// exitOnSecondSignal waits for the first signal (ctx done: graceful shutdown
// has begun), then exits at once on a second one. Nothing is lost: what was
// not acknowledged is redelivered by JetStream.
func exitOnSecondSignal(ctx context.Context) {
	<-ctx.Done()
	second := make(chan os.Signal, 1)
	signal.Notify(second, os.Interrupt, syscall.SIGTERM)
	<-second
	fmt.Fprintln(os.Stderr, "setrelay: second signal, exiting now; unacknowledged intents will be redelivered")
	os.Exit(130)
}
