package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/setrelay/setrelay/intent"
)

// HoldBucket keeps the subjects an ordered receiver with on_dead_letter:
// hold has stopped delivering: one key per (receiver, subject),
// "<token>.<hash of intent.SubjectKey>". The worker writes it before it
// terminates the dead-lettered intent, so a hold survives every kill; `dlq
// purge` and delivered replays release it.
const HoldBucket = "SETRELAY_HOLDS"

// ReasonSubjectHeld is the dead-letter reason of an intent not delivered
// because an earlier intent about its subject is dead-lettered and its
// receiver has on_dead_letter: hold.
const ReasonSubjectHeld = "subject_held"

// Hold is one held subject of one receiver.
type Hold struct {
	Receiver string `json:"receiver"`
	// Subject is the normalised subject (intent.SubjectKey).
	Subject json.RawMessage `json:"subject"`
	// DeadLetters are the DLQ sequences of the subject's held dead
	// letters in stored order; the first is the head: the only one whose
	// replay is delivered while the hold lasts.
	DeadLetters []uint64  `json:"dead_letters"`
	Since       time.Time `json:"since"`
}

// Holds reads and changes held subjects. Every change is a compare-and-set
// on the key's revision, so processes never overwrite each other.
type Holds struct {
	kv jetstream.KeyValue
}

// OpenHolds creates or binds the bucket, with the intents stream's
// replicas.
func OpenHolds(ctx context.Context, js jetstream.JetStream) (*Holds, error) {
	replicas := 1
	if s, err := js.Stream(ctx, IntentStream); err == nil && s.CachedInfo() != nil && s.CachedInfo().Config.Replicas > 0 {
		replicas = s.CachedInfo().Config.Replicas
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      HoldBucket,
		Description: "setrelay subjects held by a dead letter (on_dead_letter: hold)",
		History:     1,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("queue: hold bucket %s: %w", HoldBucket, err)
	}
	return &Holds{kv: kv}, nil
}

// bindHolds returns the bucket if it exists, nil if no receiver ever held.
func bindHolds(ctx context.Context, js jetstream.JetStream) (*Holds, error) {
	kv, err := js.KeyValue(ctx, HoldBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("queue: hold bucket %s: %w", HoldBucket, err)
	}
	return &Holds{kv: kv}, nil
}

// HoldKey is the bucket key of receiver's hold on the subject whose
// intent.SubjectKey is subjectKey.
func HoldKey(receiver string, subjectKey []byte) string {
	sum := sha256.Sum256(subjectKey)
	return Token(receiver) + "." + hex.EncodeToString(sum[:16])
}

// Get returns the hold, or ok false when the subject is not held.
func (h *Holds) Get(ctx context.Context, receiver string, subjectKey []byte) (Hold, bool, error) {
	hold, _, ok, err := h.get(ctx, HoldKey(receiver, subjectKey))
	return hold, ok, err
}

func (h *Holds) get(ctx context.Context, key string) (Hold, uint64, bool, error) {
	e, err := h.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Hold{}, 0, false, nil
	}
	if err != nil {
		return Hold{}, 0, false, fmt.Errorf("queue: read hold %s: %w", key, err)
	}
	var hold Hold
	if err := json.Unmarshal(e.Value(), &hold); err != nil {
		return Hold{}, 0, false, fmt.Errorf("queue: hold %s is not readable: %w", key, err)
	}
	return hold, e.Revision(), len(hold.DeadLetters) > 0, nil
}

// update applies change to the hold under key with compare-and-set,
// retrying on a concurrent change; an emptied hold is deleted.
func (h *Holds) update(ctx context.Context, receiver string, subjectKey []byte, change func(*Hold)) error {
	key := HoldKey(receiver, subjectKey)
	for range 20 {
		hold, rev, _, err := h.get(ctx, key)
		if err != nil {
			return err
		}
		if hold.Receiver == "" {
			hold = Hold{Receiver: receiver, Subject: json.RawMessage(subjectKey), Since: time.Now().UTC()}
		}
		change(&hold)
		switch {
		case len(hold.DeadLetters) == 0 && rev == 0:
			return nil
		case len(hold.DeadLetters) == 0:
			err = h.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		case rev == 0:
			data, _ := json.Marshal(hold)
			_, err = h.kv.Create(ctx, key, data)
		default:
			data, _ := json.Marshal(hold)
			_, err = h.kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return nil
		}
		var apiErr *jetstream.APIError
		if !errors.Is(err, jetstream.ErrKeyExists) && !(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
			return fmt.Errorf("queue: update hold %s: %w", key, err)
		}
	}
	return fmt.Errorf("queue: update hold %s: too many concurrent changes", key)
}

// Add records dead letter dlqSeq as held; when replacing (the dead letter
// of a replay of a held one, whose sequence was replaces) it takes that
// one's place, so the order stays the intents' order.
func (h *Holds) Add(ctx context.Context, receiver string, subjectKey []byte, dlqSeq, replaces uint64) error {
	return h.update(ctx, receiver, subjectKey, func(hold *Hold) {
		if slices.Contains(hold.DeadLetters, dlqSeq) {
			return // a redelivery after the hold was written
		}
		if replaces != 0 {
			if i := slices.Index(hold.DeadLetters, replaces); i >= 0 {
				hold.DeadLetters[i] = dlqSeq
				return
			}
			// The head, released for this replay's push: it is the
			// head again.
			hold.DeadLetters = slices.Insert(hold.DeadLetters, 0, dlqSeq)
			return
		}
		hold.DeadLetters = append(hold.DeadLetters, dlqSeq)
	})
}

// Release removes dead letter dlqSeq from the hold (its replay was
// delivered, or it was purged); the hold ends with its last dead letter.
func (h *Holds) Release(ctx context.Context, receiver string, subjectKey []byte, dlqSeq uint64) error {
	return h.update(ctx, receiver, subjectKey, func(hold *Hold) {
		hold.DeadLetters = slices.DeleteFunc(hold.DeadLetters, func(s uint64) bool { return s == dlqSeq })
	})
}

// releasePurged releases a purged dead letter from its subject's hold.
func (h *Holds) releasePurged(ctx context.Context, sdl StoredDeadLetter) error {
	if h == nil || len(sdl.Intent) == 0 {
		return nil
	}
	var v struct {
		Subject map[string]any `json:"subject"`
	}
	if json.Unmarshal(sdl.Intent, &v) != nil {
		return nil
	}
	return h.Release(ctx, sdl.Receiver, intent.SubjectKey(v.Subject), sdl.Seq)
}

// HoldOf reports whether dead letter sdl holds its subject (on_dead_letter:
// hold): the hold and sdl's place in it (0 is the head, whose replay is
// delivered first). ok is false when no hold names it.
func (d *DLQ) HoldOf(ctx context.Context, sdl StoredDeadLetter) (hold Hold, place int, ok bool, err error) {
	holds, err := bindHolds(ctx, d.js)
	if err != nil || holds == nil || len(sdl.Intent) == 0 {
		return Hold{}, 0, false, err
	}
	var v struct {
		Subject map[string]any `json:"subject"`
	}
	if json.Unmarshal(sdl.Intent, &v) != nil {
		return Hold{}, 0, false, nil
	}
	hold, held, err := holds.Get(ctx, sdl.Receiver, intent.SubjectKey(v.Subject))
	if err != nil || !held {
		return Hold{}, 0, false, err
	}
	place = slices.Index(hold.DeadLetters, sdl.Seq)
	return hold, place, place >= 0, nil
}

// Count is how many subjects receiver holds now.
func (h *Holds) Count(ctx context.Context, receiver string) (int, error) {
	lister, err := h.kv.ListKeysFiltered(ctx, Token(receiver)+".*")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("queue: count holds: %w", err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n, nil
}
