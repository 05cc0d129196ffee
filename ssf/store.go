package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets.
const (
	// StreamsBucket holds one entry per stream, keyed by stream id.
	StreamsBucket = "SETRELAY_SSF_STREAMS"
	// SubjectsBucket holds one entry per (stream, subject).
	SubjectsBucket = "SETRELAY_SSF_SUBJECTS"
	// PollBucket maps a polled SET's jti to the JetStream message to
	// settle when the receiver acknowledges it.
	PollBucket = "SETRELAY_SSF_POLL"
)

// errNotFound: no such stream (for this client).
var errNotFound = errors.New("stream not found")

// errConflict: the entry changed since it was read; read it again.
var errConflict = errors.New("stream changed concurrently")

// registry is the streams bucket.
type registry struct {
	kv jetstream.KeyValue
}

// openBuckets creates (or binds to) the three buckets with the queue's
// replica count. Creating is idempotent, so every process does it.
func openBuckets(ctx context.Context, js jetstream.JetStream, replicas int, pollTTL time.Duration) (streams, subjects, poll jetstream.KeyValue, err error) {
	if replicas <= 0 {
		replicas = 1
	}
	streams, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: StreamsBucket, Description: "setrelay SSF streams created by receivers",
		History: 5, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ssf: bucket %s: %w", StreamsBucket, err)
	}
	subjects, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: SubjectsBucket, Description: "setrelay SSF stream subjects, one key per stream and subject",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ssf: bucket %s: %w", SubjectsBucket, err)
	}
	// Subject changes are atomic batches (subjectindex.go).
	if err := ensureAtomic(ctx, js); err != nil {
		return nil, nil, nil, err
	}
	poll, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: PollBucket, Description: "setrelay SSF polled SETs awaiting acknowledgement",
		History: 1, Replicas: replicas, Storage: jetstream.FileStorage, TTL: pollTTL,
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("ssf: bucket %s: %w", PollBucket, err)
	}
	return streams, subjects, poll, nil
}

// get returns the stream and its revision, errNotFound if there is none.
func (r *registry) get(ctx context.Context, id string) (*Stream, uint64, error) {
	e, err := r.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, errNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("ssf: read stream %s: %w", id, err)
	}
	st, err := decodeStream(e.Value())
	if err != nil {
		return nil, 0, fmt.Errorf("ssf: stream %s: %w", id, err)
	}
	return st, e.Revision(), nil
}

func decodeStream(b []byte) (*Stream, error) {
	var st Stream
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("undecodable entry: %w", err)
	}
	return &st, nil
}

// create stores a new stream; it fails if the id exists.
func (r *registry) create(ctx context.Context, st *Stream) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	rev, err := r.kv.Create(ctx, st.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errConflict
	}
	return rev, err
}

// update stores st if the entry is still at rev.
func (r *registry) update(ctx context.Context, st *Stream, rev uint64) (uint64, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	nrev, err := r.kv.Update(ctx, st.ID, b, rev)
	if err != nil {
		if casConflict(err) {
			return 0, errConflict
		}
		return 0, fmt.Errorf("ssf: store stream %s: %w", st.ID, err)
	}
	return nrev, nil
}

// remove deletes the entry if it is still at rev.
func (r *registry) remove(ctx context.Context, id string, rev uint64) error {
	err := r.kv.Delete(ctx, id, jetstream.LastRevision(rev))
	if err != nil {
		if casConflict(err) {
			return errConflict
		}
		return fmt.Errorf("ssf: delete stream %s: %w", id, err)
	}
	return nil
}

// all lists every stream. The registry holds streams, not subjects, so
// it stays small enough to list.
func (r *registry) all(ctx context.Context) ([]*Stream, error) {
	lister, err := r.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("ssf: list streams: %w", err)
	}
	var out []*Stream
	for k := range lister.Keys() {
		st, _, err := r.get(ctx, k)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// modify reads the stream, lets fn change it, and stores it with
// compare-and-set, reading again when another process changed it first.
// fn returns an *apiError to refuse the change.
func (r *registry) modify(ctx context.Context, id string, fn func(st *Stream) error) (*Stream, error) {
	for attempt := 0; ; attempt++ {
		st, rev, err := r.get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(st); err != nil {
			return nil, err
		}
		_, err = r.update(ctx, st, rev)
		if errors.Is(err, errConflict) && attempt < 10 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return st, nil
	}
}

// casConflict reports a compare-and-set that lost to another writer. A
// replicated bucket answers with a different code than a single-replica one.
func casConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
