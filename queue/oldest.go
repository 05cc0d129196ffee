package queue

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// OldestUnsettled returns when a receiver's oldest unsettled intent was
// stored: the first message after the consumer's ack floor on one of its
// filter subjects (anything between was acked out of order, or is another
// receiver's replay). ok is false when there is none. It costs one message
// get per filter subject, so callers ask only when consumer info shows
// pending or in-flight messages. `setrelay status` and the relay's
// setrelay_consumer_oldest_pending_age_seconds gauge both use it, so the
// two always agree.
func OldestUnsettled(ctx context.Context, s jetstream.Stream, ci *jetstream.ConsumerInfo) (time.Time, bool) {
	from := ci.AckFloor.Stream + 1
	subjects := ci.Config.FilterSubjects
	if ci.Config.FilterSubject != "" {
		subjects = append(subjects[:len(subjects):len(subjects)], ci.Config.FilterSubject)
	}
	if len(subjects) == 0 {
		subjects = []string{">"} // an unfiltered consumer: the next message on any subject
	}
	var oldest time.Time
	for _, subj := range subjects {
		m, err := s.GetMsg(ctx, from, jetstream.WithGetMsgSubject(subj))
		if err != nil {
			continue // none on this subject (jetstream.ErrMsgNotFound), or NATS is unreachable
		}
		if oldest.IsZero() || m.Time.Before(oldest) {
			oldest = m.Time
		}
	}
	return oldest, !oldest.IsZero()
}
