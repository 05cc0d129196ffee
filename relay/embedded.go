package relay

import (
	"errors"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/queue"
)

// embeddedConfigError turns the embedded server's refusals that a
// configuration edit fixes into a *config.Error, so that `setrelay run`
// exits 2 and names the settings; other errors pass through unchanged.
func embeddedConfigError(err error) error {
	var exposed *queue.ExposedError
	switch {
	case errors.As(err, &exposed):
		problems := make([]config.Problem, 0, len(exposed.Missing))
		for _, m := range exposed.Missing {
			problems = append(problems, config.Problem{
				Path:    "nats.listen",
				Message: exposed.Listen + " is not a loopback address, so the embedded NATS server needs " + m,
			})
		}
		return &config.Error{Problems: problems}
	case errors.Is(err, queue.ErrServerConfig):
		return &config.Error{Problems: []config.Problem{{Path: "nats.server_config", Message: err.Error()}}}
	case errors.Is(err, queue.ErrEmbeddedAuth):
		return &config.Error{Problems: []config.Problem{{
			Path: "nats.user",
			Message: "the embedded NATS server refused the relay's credentials: nats.server_config defines its users, " +
				"so set nats.user and nats.password (or nats.token, nats.nkey, nats.creds) to the relay's own",
		}}}
	}
	return err
}
