package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
)

// acceptRetry is how soon an intent comes back when Receiver.Accept could
// not decide (its store unreachable, say).
const acceptRetry = time.Second

// accepts runs r.Accept on an intent that passed the other filters and
// returns the stage that settles it: 0 when it is accepted, StageUnwanted
// when the receiver does not want it (skipped, like an unrequested type),
// StageFilterUnavailable when the filter could not be asked (handed back
// for later, so the intent is never dropped because its store was down).
func (p *Pool) accepts(ctx context.Context, r *rcv, j *job, in *intent.Intent) Stage {
	if r.Accept == nil {
		return 0
	}
	ok, err := r.Accept(ctx, in)
	switch {
	case err != nil:
		p.log.Warn("receiver filter failed; the intent will come back", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		return StageFilterUnavailable
	case !ok:
		return StageUnwanted
	}
	return 0
}
