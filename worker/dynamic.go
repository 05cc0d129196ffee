package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// acceptRetry is how soon an intent comes back when Receiver.Accept could
// not decide (its store unreachable, say).
const acceptRetry = time.Second

// accepts runs r.Accept on an intent that passed the other filters. It
// settles the message itself when the answer is not a plain yes: skipped
// (acked) on no, handed back with a delay on an error, so the intent is
// never dropped because the filter could not be asked.
func (p *Pool) accepts(ctx context.Context, r *rcv, j *job, in *intent.Intent) bool {
	if r.Accept == nil {
		return true
	}
	ok, err := r.Accept(ctx, in)
	switch {
	case err != nil && j.last:
		p.deadLetter(ctx, r, j, queue.DeadLetter{Reason: ReasonInternal, Description: "receiver filter failed on the consumer's last delivery: " + err.Error()})
		return false
	case err != nil:
		p.log.Warn("receiver filter failed; the intent will come back", zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
		if nerr := j.msg.NakWithDelay(acceptRetry); nerr != nil {
			p.log.Debug("nak failed; the message will be redelivered after AckWait", zap.String("receiver", r.Name), zap.Error(nerr))
		}
		return false
	case !ok:
		p.skip(r, j)
		return false
	}
	return true
}
