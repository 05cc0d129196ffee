package ssf

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/set"
)

// Dead-letter reasons of poll delivery.
const (
	// ReasonPollRejected: the poll receiver listed the SET in setErrs; the
	// dead letter carries its err and description.
	ReasonPollRejected = "poll_rejected"
	reasonInvalid      = "invalid_intent"
	reasonBuild        = "build_failed"
	// reasonInvalidReplay matches worker.ReasonInvalidReplay.
	reasonInvalidReplay = "invalid_replay"
)

// MaxAcks bounds the ack and setErrs entries of one poll request.
const MaxAcks = 10000

// pollRequest is the RFC 8936 §2.4 request body.
type pollRequest struct {
	MaxEvents         *int              `json:"maxEvents"`
	ReturnImmediately bool              `json:"returnImmediately"`
	Ack               []string          `json:"ack"`
	SetErrs           map[string]setErr `json:"setErrs"`
}

type setErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

// pollResponse is the RFC 8936 §2.5 response body.
type pollResponse struct {
	Sets          map[string]string `json:"sets"`
	MoreAvailable bool              `json:"moreAvailable,omitempty"`
}

// pending is what settling a polled SET needs: its JetStream ack subject
// (valid from any process) and where the intent is stored. It is kept in
// the poll bucket under "<stream id>.<jti>", written before the SET is
// returned, so an ack reaching any process settles the right message.
type pending struct {
	Reply    string    `json:"reply"`
	Seq      uint64    `json:"seq"`
	IntentID string    `json:"intent_id"`
	Stored   time.Time `json:"stored"`
	Attempts uint64    `json:"attempts"`
	ReplayOf string    `json:"replay_of,omitempty"`
}

// handlePoll is the stream's RFC 8936 poll endpoint.
func (s *Server) handlePoll(w http.ResponseWriter, r *http.Request, p *Principal) {
	if !allowed(w, r, http.MethodPost) || !need(w, p, ScopePoll) {
		return
	}
	var req pollRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := r.Context()
	st, _, err := s.owned(ctx, r.PathValue("stream_id"), p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if st.Delivery.Method != MethodPoll {
		s.fail(w, r, badRequest("stream %s delivers by push (%s), not poll", st.ID, MethodPush))
		return
	}
	maxEvents := DefaultMaxEvents
	if req.MaxEvents != nil {
		maxEvents = *req.MaxEvents
	}
	switch {
	case maxEvents < 0:
		s.fail(w, r, badRequest("maxEvents must not be negative"))
		return
	case len(req.Ack)+len(req.SetErrs) > MaxAcks:
		s.fail(w, r, badRequest("at most %d ack and setErrs entries per request", MaxAcks))
		return
	}
	maxEvents = min(maxEvents, MaxMaxEvents)
	if err := s.settle(ctx, st, req.Ack, req.SetErrs); err != nil {
		s.fail(w, r, err)
		return
	}
	resp := pollResponse{Sets: map[string]string{}}
	switch {
	case maxEvents == 0:
		// Acknowledge only (RFC 8936 §2.4). moreAvailable must still be
		// told: §2.5 reads its absence as "nothing further".
		if st.Status == StatusEnabled {
			resp.MoreAvailable = s.moreAvailable(ctx, st)
		}
	case st.Status == StatusEnabled:
		if err := s.fetchSETs(ctx, st, maxEvents, !req.ReturnImmediately, &resp); err != nil {
			s.fail(w, r, err)
			return
		}
	case !req.ReturnImmediately:
		// Paused or disabled: nothing can come, but a long poll still
		// waits out its bound, so a receiver polling in a loop does not
		// spin while its stream is paused.
		t := time.NewTimer(s.cfg.MaxPollWait)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	writeJSON(w, http.StatusOK, resp)
}

func pollKey(streamID, jti string) string { return streamID + "." + jti }

func validJTI(jti string) bool {
	if len(jti) != 32 {
		return false
	}
	_, err := hex.DecodeString(jti)
	return err == nil
}

// settle acknowledges and dead-letters what the receiver reported. An
// unknown jti (never offered, already settled and expired, or another
// stream's) is ignored: the receiver cannot settle what is not its own.
func (s *Server) settle(ctx context.Context, st *Stream, acks []string, errs map[string]setErr) error {
	if len(acks) == 0 && len(errs) == 0 {
		return nil
	}
	var replies []string
	for _, jti := range acks {
		if !validJTI(jti) {
			continue
		}
		pd, err := s.lookupPending(ctx, st.ID, jti)
		if err != nil {
			return err
		}
		if pd != nil {
			replies = append(replies, pd.Reply)
		}
	}
	if err := s.confirm(ctx, replies, []byte("+ACK")); err != nil {
		return err
	}
	s.m.acked.WithLabelValues(st.ID).Add(float64(len(replies)))
	for jti, e := range errs {
		if !validJTI(jti) {
			continue
		}
		pd, err := s.lookupPending(ctx, st.ID, jti)
		if err != nil {
			return err
		}
		if pd == nil {
			continue
		}
		if err := s.rejected(ctx, st, pd, e); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) lookupPending(ctx context.Context, streamID, jti string) (*pending, error) {
	e, err := s.poll.Get(ctx, pollKey(streamID, jti))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssf: poll entry %s: %w", jti, err)
	}
	var pd pending
	if err := json.Unmarshal(e.Value(), &pd); err != nil || !strings.HasPrefix(pd.Reply, "$JS.ACK.") {
		return nil, nil
	}
	return &pd, nil
}

// confirm sends body (+ACK, +TERM) to every ack subject and waits for the
// server to confirm each, as jetstream.Msg.DoubleAck does, so that once
// the response goes out the SETs are settled and will not be offered again.
func (s *Server) confirm(ctx context.Context, replies []string, body []byte) error {
	if len(replies) == 0 {
		return nil
	}
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("ssf: ack: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for _, reply := range replies {
		if err := s.nc.PublishMsg(&nats.Msg{Subject: reply, Reply: inbox, Data: body}); err != nil {
			return fmt.Errorf("ssf: ack: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range replies {
		if _, err := sub.NextMsgWithContext(cctx); err != nil {
			// Some confirmations did not come: the server may still have
			// the acks; if not, those SETs are offered again and the
			// receiver acknowledges them again.
			s.log.Warn("some poll acks were not confirmed", zap.Int("acks", len(replies)), zap.Error(err))
			return nil
		}
	}
	return nil
}

// rejected dead-letters a SET the receiver listed in setErrs, then
// terminates its message.
func (s *Server) rejected(ctx context.Context, st *Stream, pd *pending, e setErr) error {
	name := ReceiverName(st.ID)
	stream, err := s.js.Stream(ctx, queue.IntentStream)
	if err != nil {
		return fmt.Errorf("ssf: stream %s: %w", queue.IntentStream, err)
	}
	raw, err := stream.GetMsg(ctx, pd.Seq)
	if err != nil {
		return fmt.Errorf("ssf: read intent %d for a dead letter: %w", pd.Seq, err)
	}
	dl := queue.DeadLetter{
		Receiver: name, Reason: ReasonPollRejected,
		// The receiver chose these words: escaped and bounded as a push
		// receiver's are, because `dlq show` prints them to a terminal.
		Err: push.Excerpt([]byte(e.Err), 256), Description: push.Excerpt([]byte(e.Description), 1024),
		Attempts: int(pd.Attempts), FirstAttempt: pd.Stored, LastAttempt: s.now(),
		StreamSeq: pd.Seq, IntentID: pd.IntentID, Intent: raw.Data,
	}
	if pd.ReplayOf != "" {
		dl.ReplayOf, _ = strconv.ParseUint(pd.ReplayOf, 10, 64)
	}
	if err := queue.PublishDeadLetter(ctx, s.js, dl); err != nil {
		return fmt.Errorf("ssf: dead-letter a rejected SET: %w", err)
	}
	if err := s.confirm(ctx, []string{pd.Reply}, []byte("+TERM "+ReasonPollRejected)); err != nil {
		return err
	}
	s.m.setErrs.WithLabelValues(st.ID).Inc()
	s.log.Info("dead-lettered a SET the poll receiver rejected", zap.String("stream_id", st.ID), zap.Uint64("stream_seq", pd.Seq), zap.String("err", dl.Err))
	return nil
}

func (s *Server) consumer(ctx context.Context, id string) (jetstream.Consumer, error) {
	if c, ok := s.consumers.Load(id); ok {
		return c.(jetstream.Consumer), nil
	}
	c, err := s.js.Consumer(ctx, queue.IntentStream, queue.ConsumerName(ReceiverName(id)))
	if err != nil {
		return nil, fmt.Errorf("ssf: consumer of stream %s: %w", id, err)
	}
	s.consumers.Store(id, c)
	return c, nil
}

// fetchSETs fills resp with up to n SETs. With wait, when none is ready it
// waits up to MaxPollWait (bounded by the request) for the first.
func (s *Server) fetchSETs(ctx context.Context, st *Stream, n int, wait bool, resp *pollResponse) error {
	cons, err := s.consumer(ctx, st.ID)
	if err != nil {
		return err
	}
	deadline := s.now().Add(s.cfg.MaxPollWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var futures []jetstream.PubAckFuture
	for {
		batch, err := cons.FetchNoWait(n - len(resp.Sets))
		if err != nil {
			return fmt.Errorf("ssf: fetch for stream %s: %w", st.ID, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			f, err := s.offer(ctx, st, msg, resp)
			if err != nil {
				return err
			}
			if f != nil {
				futures = append(futures, f)
			}
		}
		if len(resp.Sets) >= n || (got > 0 && len(resp.Sets) > 0) {
			break
		}
		if got > 0 {
			continue // only skipped intents: look again at once
		}
		remaining := time.Until(deadline)
		if !wait || len(resp.Sets) > 0 || remaining < 50*time.Millisecond || ctx.Err() != nil {
			break
		}
		// Nothing ready: wait for one, then take what else is there.
		one, err := cons.Fetch(1, jetstream.FetchMaxWait(remaining))
		if err != nil {
			return fmt.Errorf("ssf: fetch for stream %s: %w", st.ID, err)
		}
		for msg := range one.Messages() {
			f, err := s.offer(ctx, st, msg, resp)
			if err != nil {
				return err
			}
			if f != nil {
				futures = append(futures, f)
			}
		}
	}
	// Every SET's pending entry must be stored before the SET is handed
	// out: an ack for it may come to another process.
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("ssf: record polled SET: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(resp.Sets) > 0 {
		s.m.polled.WithLabelValues(st.ID).Add(float64(len(resp.Sets)))
		resp.MoreAvailable = s.moreAvailable(ctx, st)
	}
	return nil
}

// moreAvailable reports whether st's consumer has intents not yet offered.
// Some may turn out not to be for st (another type, subject or receiver),
// so it can say true when a poll then finds nothing, which costs the
// receiver one more poll; saying false while one waits would make it stop.
// SETs offered and not acknowledged come back after the ack wait and are
// not counted until then. An error reads as false: the next poll finds
// what is there.
func (s *Server) moreAvailable(ctx context.Context, st *Stream) bool {
	cons, err := s.consumer(ctx, st.ID)
	if err != nil {
		return false
	}
	info, err := cons.Info(ctx)
	return err == nil && info.NumPending > 0
}

// offer turns one message into a SET for the response, or settles it
// without delivery (not requested: ack; undecodable or unbuildable: dead
// letter). It returns the pending entry's publish, nil when none.
func (s *Server) offer(ctx context.Context, st *Stream, msg jetstream.Msg, resp *pollResponse) (jetstream.PubAckFuture, error) {
	name := ReceiverName(st.ID)
	md, err := msg.Metadata()
	if err != nil {
		return nil, nil
	}
	// Private types decode, so they can be filtered out below rather than
	// dead-lettered for this stream: events_delivered never lists one.
	in, derr := intent.Decode(msg.Data(), intent.Options{AllowPrivateTypes: true})
	if derr != nil {
		dl := queue.DeadLetter{Reason: reasonInvalid, Description: derr.Error()}
		var ve *intent.ValidationError
		if errors.As(derr, &ve) {
			dl.Errors = ve.Problems()
		}
		return nil, s.deadLetterMsg(ctx, st, msg, md, "", dl)
	}
	replayOf := ""
	switch {
	case queue.IsReplayFor(msg.Subject(), name):
		// A dead letter replayed by `setrelay dlq replay`: authentic
		// replays only (queue.ReplayKeys), as for a push receiver.
		seq, err := s.replayKeys.Verify(ctx, name, msg.Headers(), msg.Data())
		switch {
		case errors.Is(err, queue.ErrInvalidReplay):
			return nil, s.deadLetterMsg(ctx, st, msg, md, in.ID, queue.DeadLetter{Reason: reasonInvalidReplay, Description: err.Error()})
		case err != nil:
			_ = msg.NakWithDelay(5 * time.Second)
			s.log.Warn("cannot check a replay: the replay key is unavailable; it will come back", zap.String("stream_id", st.ID), zap.Error(err))
			return nil, nil
		}
		replayOf = strconv.FormatUint(seq, 10)
	case ownStreamEvent(st, in):
	case !st.wantsType(in.EventType) || (len(in.Receivers) > 0 && !slices.Contains(in.Receivers, name)):
		return nil, s.skip(st, msg)
	default:
		ok, err := s.subjects.wants(ctx, st, s.cfg.DefaultSubjects, in.Subject)
		if err != nil {
			// Cannot tell: leave it for a later poll, never drop it.
			_ = msg.NakWithDelay(time.Second)
			return nil, nil
		}
		if !ok {
			return nil, s.skip(st, msg)
		}
	}
	in = s.acceptedExtras(st, in)
	claims, err := set.Build(in, s.profile(st), set.Options{IssuedAt: md.Timestamp, ReplayOf: replayOf})
	if err != nil {
		return nil, s.deadLetterMsg(ctx, st, msg, md, in.ID, queue.DeadLetter{Reason: reasonBuild, Description: err.Error()})
	}
	jws, err := s.signer.Sign(claims, s.sendKID)
	if err != nil {
		// A signing outage (KMS): offer it on a later poll.
		_ = msg.NakWithDelay(time.Second)
		s.log.Warn("signing a polled SET failed; it will be offered later", zap.String("stream_id", st.ID), zap.Error(err))
		return nil, nil
	}
	jti := set.JTI(in.ID, name, replayOf)
	pd := pending{Reply: msg.Reply(), Seq: md.Sequence.Stream, IntentID: in.ID, Stored: md.Timestamp, Attempts: md.NumDelivered, ReplayOf: replayOf}
	b, _ := json.Marshal(pd)
	f, err := s.js.PublishAsync("$KV."+PollBucket+"."+pollKey(st.ID, jti), b)
	if err != nil {
		_ = msg.Nak()
		return nil, fmt.Errorf("ssf: record polled SET: %w", err)
	}
	resp.Sets[jti] = jws
	return f, nil
}

// acceptedExtras returns in with only the extra events st takes, as the
// worker does for push streams: an extra event rides in the main event's
// SET, so it must pass the stream's type filter too (§8.1.1: the receiver
// relies on events_delivered). A companion (intent.IsCompanionType) goes
// with its main event; an SSF stream event never rides as an extra, since
// its sub_id must be the stream itself (§8.1.4.1, §8.1.5) and only the
// transmitter sends it. The main event is still delivered; what is left
// out is logged and counted. in itself is left alone (it is shared by
// re-offers, which make the same choice and so the same claims).
func (s *Server) acceptedExtras(st *Stream, in *intent.Intent) *intent.Intent {
	var omitted []string
	for uri := range in.ExtraEvents {
		if !st.acceptsExtra(uri) {
			omitted = append(omitted, uri)
		}
	}
	if len(omitted) == 0 {
		return in
	}
	out := *in
	out.ExtraEvents = make(map[string]map[string]any, len(in.ExtraEvents)-len(omitted))
	for uri, ev := range in.ExtraEvents {
		if st.acceptsExtra(uri) {
			out.ExtraEvents[uri] = ev
		}
	}
	slices.Sort(omitted)
	s.m.extraOmitted.WithLabelValues(ReceiverName(st.ID)).Add(float64(len(omitted)))
	s.log.Info("extra events left out of a polled SET: the stream did not ask for their types",
		zap.String("stream_id", st.ID), zap.String("intent_id", in.ID), zap.Strings("types", omitted))
	return &out
}

// acceptsExtra reports whether st takes an extra event of type uri.
func (st *Stream) acceptsExtra(uri string) bool {
	if strings.HasPrefix(uri, intent.SSFPrefix) {
		return false
	}
	return intent.IsCompanionType(uri) || st.wantsType(uri)
}

func (s *Server) skip(st *Stream, msg jetstream.Msg) error {
	if err := msg.Ack(); err != nil {
		s.log.Warn("ack of an intent not requested by a poll stream failed; it will come back", zap.String("stream_id", st.ID), zap.Error(err))
		return nil
	}
	s.m.skipped.WithLabelValues(st.ID).Inc()
	return nil
}

func (s *Server) deadLetterMsg(ctx context.Context, st *Stream, msg jetstream.Msg, md *jetstream.MsgMetadata, intentID string, dl queue.DeadLetter) error {
	dl.Receiver = ReceiverName(st.ID)
	dl.Attempts = int(md.NumDelivered)
	dl.FirstAttempt, dl.LastAttempt = md.Timestamp, s.now()
	dl.StreamSeq, dl.IntentID, dl.Intent = md.Sequence.Stream, intentID, msg.Data()
	if err := queue.PublishDeadLetter(ctx, s.js, dl); err != nil {
		_ = msg.NakWithDelay(5 * time.Second)
		s.log.Warn("storing a dead letter failed; the intent will come back", zap.String("stream_id", st.ID), zap.Error(err))
		return nil
	}
	if err := msg.TermWithReason(dl.Reason); err != nil {
		s.log.Warn("term after dead-lettering failed", zap.String("stream_id", st.ID), zap.Error(err))
	}
	s.log.Info("dead-lettered", zap.String("stream_id", st.ID), zap.Uint64("stream_seq", md.Sequence.Stream), zap.String("reason", dl.Reason))
	return nil
}
