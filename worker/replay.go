package worker

import (
	"context"
	"errors"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

// ReasonInvalidReplay: a message on the receiver's replay subject that
// `setrelay dlq replay` did not make (no or a wrong Setrelay-Replay-Mac, a
// malformed Setrelay-Replay-Of, or bytes other than the dead letter's). It
// is dead-lettered rather than delivered: a replay skips the receiver's
// event filter and seeds a fresh jti, so only a real one may.
const ReasonInvalidReplay = "invalid_replay"

// replayKeyRetry is how soon a replay comes back when the replay key
// cannot be read (NATS trouble, an unprovisioned bucket): not the message's
// fault, so it is neither delivered nor dead-lettered meanwhile.
const replayKeyRetry = 5 * time.Second

// authenticReplay checks a message that arrived on r's replay subject (see
// queue.ReplayKeys). For a real replay it sets j.replayOf, the verified
// dead-letter sequence that seeds the new jti, and returns 0. Otherwise it
// returns the stage Settle decides on: StageInvalidReplay for a forged or
// altered replay (dead-lettered as invalid_replay), StageReplayUnchecked
// when the key cannot be read (handed back to be tried again later; on its
// last delivery, dead-lettered so it is not lost).
func (p *Pool) authenticReplay(ctx context.Context, r *rcv, j *job) Stage {
	seq, err := p.replayKeys.Verify(ctx, r.Name, j.msg.Headers(), j.data)
	switch {
	case err == nil:
		j.replayOf = strconv.FormatUint(seq, 10)
		return 0
	case errors.Is(err, queue.ErrInvalidReplay):
		j.detail = err.Error()
		return StageInvalidReplay
	}
	p.log.Warn("cannot check a replay: the replay key is unavailable; it will come back",
		zap.String("receiver", r.Name), zap.Uint64("stream_seq", j.seq), zap.Error(err))
	j.detail = "replay not checked: " + err.Error()
	return StageReplayUnchecked
}
