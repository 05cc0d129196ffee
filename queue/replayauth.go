package queue

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Replays are authenticated: a message on setrelay.replay.<receiver> skips
// the receiver's type and receivers filters and seeds a new jti, so it must
// be what `dlq replay` made from a real dead letter of that receiver, not
// anything someone able to publish there sent.
//
// Replay cannot be checked against the dead-letter stream when the worker
// takes it, because Replay deletes the dead letter as soon as the replay is
// stored (so `dlq list` stays truthful and a dead letter is replayed once).
// Instead Replay, having read the dead letter, signs a reference to it: an
// HMAC-SHA256 over the receiver, the dead letter's sequence and the exact
// intent bytes, under a random key that Provision creates once in the
// JetStream key-value bucket ReplayKeyBucket. Whoever may publish replays
// and read dead letters (the relay, `setrelay dlq`) may read the key;
// producers may not (see the NATS permission examples). The worker accepts
// a replay only when the MAC verifies for its own receiver and the message's
// bytes, so the sequence that seeds the jti can no longer be chosen freely.
const (
	// ReplayKeyBucket is the key-value bucket holding the replay key.
	ReplayKeyBucket = "setrelay_replay"
	// HeaderReplayMAC carries the replay's HMAC (base64url, no padding).
	HeaderReplayMAC = "Setrelay-Replay-Mac"

	replayKeyName   = "hmac-sha256"
	replayKeySize   = 32
	replayMACDomain = "setrelay/replay/v1"
)

// ErrInvalidReplay is wrapped by ReplayKeys.Verify when a replay message is
// not one `dlq replay` made for this receiver and these bytes. It is
// permanent: the worker dead-letters such a message as invalid_replay.
var ErrInvalidReplay = errors.New("not a replay made by `setrelay dlq replay` for this receiver")

// ErrReplayKey is wrapped when the replay key cannot be read (the bucket is
// missing or NATS is unavailable). It is not the message's fault: retry.
var ErrReplayKey = errors.New("queue: replay key unavailable")

// ReplayKeyConfig is the replay key bucket's configuration for cfg.
func ReplayKeyConfig(cfg Config) jetstream.KeyValueConfig {
	cfg = cfg.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      ReplayKeyBucket,
		Description: "setrelay: the key that authenticates dead-letter replays",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}
}

// provisionReplayKey creates the bucket and, once, the key. Create is
// atomic, so processes provisioning at the same time agree on one key.
func provisionReplayKey(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	var kv jetstream.KeyValue
	err := retryProvision(ctx, func(ctx context.Context) (err error) {
		kv, err = js.CreateOrUpdateKeyValue(ctx, ReplayKeyConfig(cfg))
		return err
	})
	if err != nil {
		return fmt.Errorf("queue: provision key-value bucket %s: %w", ReplayKeyBucket, err)
	}
	key := make([]byte, replayKeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("queue: generate replay key: %w", err)
	}
	return retryProvision(ctx, func(ctx context.Context) error {
		_, err := kv.Create(ctx, replayKeyName, key)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("queue: store replay key: %w", err)
		}
		return nil
	})
}

// ReplayKeys signs and verifies replay references. It reads the key from
// NATS once and caches it; a verification that fails with the cached key
// reads it again once, in case the bucket was re-provisioned.
type ReplayKeys struct {
	js  jetstream.JetStream
	mu  sync.Mutex
	key []byte
}

// NewReplayKeys returns the replay signer and verifier on js.
func NewReplayKeys(js jetstream.JetStream) *ReplayKeys { return &ReplayKeys{js: js} }

func (k *ReplayKeys) load(ctx context.Context, fresh bool) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.key != nil && !fresh {
		return k.key, nil
	}
	kv, err := k.js.KeyValue(ctx, ReplayKeyBucket)
	if err != nil {
		return nil, fmt.Errorf("%w: bucket %s: %w (run `setrelay provision` or start the relay, which provisions it)", ErrReplayKey, ReplayKeyBucket, err)
	}
	e, err := kv.Get(ctx, replayKeyName)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrReplayKey, err)
	}
	if len(e.Value()) != replayKeySize {
		return nil, fmt.Errorf("%w: the stored key is %d bytes, want %d", ErrReplayKey, len(e.Value()), replayKeySize)
	}
	k.key = append([]byte(nil), e.Value()...)
	return k.key, nil
}

// replayMAC is HMAC-SHA256 over a domain string, the length-prefixed
// receiver token, the dead letter's sequence and the SHA-256 of the intent
// bytes.
func replayMAC(key []byte, receiver string, dlqSeq uint64, data []byte) []byte {
	sum := sha256.Sum256(data)
	buf := make([]byte, 0, len(replayMACDomain)+len(receiver)+8+len(sum)+binary.MaxVarintLen64)
	buf = append(buf, replayMACDomain...)
	buf = binary.AppendUvarint(buf, uint64(len(receiver)))
	buf = append(buf, receiver...)
	buf = binary.BigEndian.AppendUint64(buf, dlqSeq)
	buf = append(buf, sum[:]...)
	m := hmac.New(sha256.New, key)
	m.Write(buf)
	return m.Sum(nil)
}

// Sign returns the HeaderReplayMAC value for the replay of dead letter
// dlqSeq of receiver with these intent bytes.
func (k *ReplayKeys) Sign(ctx context.Context, receiver string, dlqSeq uint64, data []byte) (string, error) {
	key, err := k.load(ctx, false)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(replayMAC(key, Token(receiver), dlqSeq, data)), nil
}

// Verify checks that a message on receiver's replay subject, with headers h
// and bytes data, is a replay `dlq replay` made: Setrelay-Replay-Of names a
// dead-letter sequence in canonical form and Setrelay-Replay-Mac is its MAC
// for this receiver and these bytes. It returns the sequence, which the
// caller may then trust as the jti seed. Errors wrap ErrInvalidReplay (the
// message is bad) or ErrReplayKey (try again later).
func (k *ReplayKeys) Verify(ctx context.Context, receiver string, h nats.Header, data []byte) (uint64, error) {
	v := h.Get(HeaderReplayOf)
	seq, err := strconv.ParseUint(v, 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != v {
		return 0, fmt.Errorf("%w: %s %q is not a dead-letter sequence", ErrInvalidReplay, HeaderReplayOf, bounded(v))
	}
	got, err := base64.RawURLEncoding.DecodeString(h.Get(HeaderReplayMAC))
	if err != nil || len(got) != sha256.Size {
		return 0, fmt.Errorf("%w: no valid %s header (replays are made with `setrelay dlq replay`)", ErrInvalidReplay, HeaderReplayMAC)
	}
	for _, fresh := range []bool{false, true} {
		key, err := k.load(ctx, fresh)
		if err != nil {
			return 0, err
		}
		if hmac.Equal(got, replayMAC(key, Token(receiver), seq, data)) {
			return seq, nil
		}
	}
	return 0, fmt.Errorf("%w: %s does not match dead letter %d of receiver %q with these bytes", ErrInvalidReplay, HeaderReplayMAC, seq, receiver)
}

// bounded cuts a header value quoted in an error.
func bounded(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
