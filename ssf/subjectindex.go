package ssf

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file holds the complex-subject match index (SSF 1.0 §8.1.3.1) and
// the protocol that keeps it exact.
//
// The rule: an event subject E matches a stored complex subject S when
// every member name is absent on one side or identical on both, and (our
// reading, see subjectsMatch) at least one name is shared. Put another
// way: with K = names(S) ∩ names(E), E matches S iff K is not empty and
// S|K = E|K (the projections onto K are equal).
//
// The index: for every stored complex subject S and every non-empty
// K ⊆ names(S), the entry "<stream>.x.<hash of S|K>" counts the stored
// subjects with that projection, per shape (the sorted member names of
// S). Deciding an event E looks up E|K for every non-empty K ⊆ names(E)
// (at most 2^8-1 look-ups, 3 for a typical two-member subject) and
// matches when some shape in it has a non-zero count and meets names(E)
// in exactly K. An entry's size is bounded by the number of shapes, not
// subjects: a tenant with a million users is one counter in the entry of
// {tenant: T}.
//
// The protocol: a subject's own record ("<stream>.<hash of S>") says
// whether S is counted in the index (Indexed) and in which class (added
// and verified, or removed). A change reads the record and every index
// entry it touches, then writes them all in one JetStream atomic batch,
// each message with Nats-Expected-Last-Subject-Sequence set to the
// revision it read. Either the whole batch commits or none of it does,
// and a batch that lost a race to another writer is refused and redone
// from fresh reads, so the counts always equal the records: no over-count
// (which would leak events about removed subjects, §9) and no under-count
// (which would lose events). Repeating a change is a no-op because the
// record already says it was done.

// maxShapes bounds the shapes (distinct member name sets) counted in one
// index entry. Shapes are few in practice (the seven names of §3.3 and
// their combinations); the bound stops one receiver from inventing member
// names to grow the entries its events read. It never limits how many
// subjects share a shape.
const maxShapes = 64

// maxChangeAttempts bounds the retries of one change that keeps losing
// compare-and-set races (a burst of changes about one hot member).
const maxChangeAttempts = 25

// Contribution classes of a stored complex subject to the index.
type contribution int

const (
	contribNone    contribution = iota // absent, unverified, or not indexed
	contribAdded                       // added with verified true
	contribRemoved                     // removed (default_subjects ALL)
)

// shapeCounts are the stored subjects of one shape with one projection.
type shapeCounts struct {
	Added   int64 `json:"a,omitempty"`
	Removed int64 `json:"r,omitempty"`
}

// indexEntry maps a shape (JSON array of the sorted member names) to its
// counts.
type indexEntry map[string]shapeCounts

// errTooManyShapes refuses a subject whose shape would be the
// maxShapes+1st in one of its index entries.
var errTooManyShapes = fmt.Errorf("this stream already has %d different member name combinations sharing one of this subject's members; use the member names of SSF 1.0 §3.3 (user, device, session, application, tenant, org_unit, group) or fewer combinations", maxShapes)

// errChangeContended: the change kept losing races; the client retries.
var errChangeContended = &apiError{status: 503, code: "temporarily_unavailable", msg: "subjects sharing a member with this one are being changed by many requests at once; retry shortly"}

// subjectsMatch is the SSF 1.0 §8.1.3.1 rule between two subjects. Simple
// subjects match only when identical. A simple subject never matches a
// complex one: §8.1.3.1 defines matching within each kind only, and a
// complex subject identifies a principal by all of its members together
// (§3.3), so {user: U, tenant: T} is not the simple subject U. Two complex
// subjects match when, for every member name, the member is absent on one
// side or identical on both, and at least one member name is shared. The
// last condition is ours: read literally, the rule makes {tenant: T} match
// {user: U} (no name in common, so no name disagrees), so a receiver that
// added one tenant would get every event about any user, and removing a
// made-up member under default ALL would stop every event. §9
// (information harvesting) lets a transmitter send fewer events than a
// receiver asks for; we never deliver on an empty overlap.
func subjectsMatch(a, b map[string]any) bool {
	if isComplex(a) != isComplex(b) {
		return false
	}
	if !isComplex(a) {
		return string(canonical(a)) == string(canonical(b))
	}
	ma, mb := members(a), members(b)
	shared := false
	for name, va := range ma {
		vb, ok := mb[name]
		if !ok {
			continue
		}
		if string(memberJSON(va)) != string(memberJSON(vb)) {
			return false
		}
		shared = true
	}
	return shared
}

// memberJSON is a member value's canonical JSON (object members sorted).
func memberJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func sortedNames(m map[string]any) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// shapeOf is the index's name for a set of member names.
func shapeOf(names []string) string {
	b, _ := json.Marshal(names)
	return string(b)
}

// subsets calls f with every non-empty subset of names (sorted, so
// len(names) ≤ maxComplexMembers), as the subset's names.
func subsets(names []string, f func(k []string) bool) {
	for mask := uint(1); mask < 1<<len(names); mask++ {
		k := make([]string, 0, bits.OnesCount(mask))
		for i, name := range names {
			if mask&(1<<i) != 0 {
				k = append(k, name)
			}
		}
		if !f(k) {
			return
		}
	}
}

func project(m map[string]any, k []string) map[string]any {
	out := make(map[string]any, len(k))
	for _, name := range k {
		out[name] = m[name]
	}
	return out
}

// projectionKey is the index entry of the projection proj (member name to
// value) in a stream. The "x" token keeps it apart from the two-token
// subject records, and the stream id prefix puts it under purge's
// "<stream id>.>".
func projectionKey(streamID string, proj map[string]any) string {
	b, _ := json.Marshal(proj)
	sum := sha256.Sum256(b)
	return streamID + ".x." + hex.EncodeToString(sum[:20])
}

// meetsIn reports whether a stored subject of shape meets the event's
// members in exactly k: every name of the shape outside k is absent from
// the event.
func meetsIn(shape string, k []string, event map[string]any) bool {
	var names []string
	if json.Unmarshal([]byte(shape), &names) != nil {
		return false
	}
	for _, n := range names {
		if _, inEvent := event[n]; inEvent && !slices.Contains(k, n) {
			return false
		}
	}
	return true
}

// contributionOf is what a stored record adds to the index.
func contributionOf(e *subjectEntry) contribution {
	switch {
	case e == nil || !e.Indexed:
		return contribNone
	case e.State == subjectRemoved:
		return contribRemoved
	case e.State == subjectAdded && e.Verified:
		return contribAdded
	}
	return contribNone
}

// sameState reports whether cur already is next, so a change is a no-op.
// A complex record written before the index existed is never the same: it
// is re-written to be counted.
func sameState(cur, next *subjectEntry, complexSubject bool) bool {
	switch {
	case cur == nil || next == nil:
		return cur == nil && next == nil
	case complexSubject && !cur.Indexed:
		return false
	}
	return cur.State == next.State && cur.Verified == next.Verified
}

// kvRead is a key's latest value and the stream sequence to expect when
// writing it; seq 0 when the key never existed, value nil when it is
// absent or deleted.
type kvRead struct {
	seq   uint64
	value []byte
}

func (ss *subjectStore) subjectFor(key string) string { return "$KV." + SubjectsBucket + "." + key }

// readLatest reads a key from the stream leader (not a direct get, which a
// follower may answer from behind): a change computed from a stale read
// would only be refused by the compare-and-set, but an idempotent no-op
// decided from a stale read would wrongly skip a write.
func (ss *subjectStore) readLatest(ctx context.Context, key string) (kvRead, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": ss.subjectFor(key)})
	msg, err := ss.nc.RequestWithContext(ctx, ss.apiPrefix+"STREAM.MSG.GET.KV_"+SubjectsBucket, req)
	if err != nil {
		return kvRead{}, fmt.Errorf("ssf: read %s: %w", key, err)
	}
	var resp struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Hdrs []byte `json:"hdrs"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return kvRead{}, fmt.Errorf("ssf: read %s: %w", key, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return kvRead{}, nil
		}
		return kvRead{}, fmt.Errorf("ssf: read %s: %w", key, resp.Error)
	}
	if resp.Message == nil {
		return kvRead{}, fmt.Errorf("ssf: read %s: empty answer", key)
	}
	r := kvRead{seq: resp.Message.Seq, value: resp.Message.Data}
	if len(resp.Message.Hdrs) > 0 {
		// A delete or purge marker: the key is absent, at this sequence.
		if h, err := nats.DecodeHeadersMsg(resp.Message.Hdrs); err == nil && h.Get("KV-Operation") != "" {
			r.value = nil
		}
	}
	if len(r.value) == 0 {
		r.value = nil
	}
	return r, nil
}

// pendingWrite is one message of a change's batch.
type pendingWrite struct {
	key    string
	expect uint64
	value  []byte // nil: delete the key
}

// crashHook, when set (tests only), runs after the batch's messages but
// the commit were sent; an error from it abandons the batch there, as a
// process dying mid-change would.
type crashHook func() error

// commitBatch writes every message or none: a JetStream atomic batch in
// which each message expects the key's revision that was read. The last
// message commits; the server checks every expectation at commit, under
// the stream's lock, and refuses the whole batch if one fails.
func (ss *subjectStore) commitBatch(ctx context.Context, writes []pendingWrite) error {
	var idb [16]byte
	_, _ = rand.Read(idb[:])
	id := base64.RawURLEncoding.EncodeToString(idb[:])
	for i, w := range writes {
		m := nats.NewMsg(ss.subjectFor(w.key))
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(w.expect, 10))
		if w.value == nil {
			m.Header.Set("KV-Operation", "DEL")
		} else {
			m.Data = w.value
		}
		if i < len(writes)-1 {
			if err := ss.nc.PublishMsg(m); err != nil {
				return fmt.Errorf("ssf: subject change: %w", err)
			}
			continue
		}
		if ss.crash != nil {
			if err := ss.crash(); err != nil {
				return err
			}
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		reply, err := ss.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return fmt.Errorf("ssf: subject change: %w", err)
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(reply.Data, &ack); err != nil {
			return fmt.Errorf("ssf: subject change: undecodable answer: %w", err)
		}
		if ack.Error != nil {
			return ack.Error
		}
	}
	return nil
}

// set makes subject's record in the stream next (nil: absent) and moves
// its counts in the index with it, atomically. subject is normalised;
// next.Subject is the request's form, kept for operators.
func (ss *subjectStore) set(ctx context.Context, streamID string, subject map[string]any, next *subjectEntry) error {
	complexSubject := isComplex(subject)
	if next != nil && complexSubject {
		next.Indexed = true
	}
	var names []string
	if complexSubject {
		names = sortedNames(subject)
		if len(names) > maxComplexMembers {
			return fmt.Errorf("a complex subject may have at most %d members", maxComplexMembers)
		}
	}
	key := subjectKey(streamID, subject)
	delay := 5 * time.Millisecond
	for range maxChangeAttempts {
		err := ss.trySet(ctx, streamID, key, subject, names, next)
		if !casConflict(err) && !atomicDisabled(err) && !batchRetryable(err) {
			return err
		}
		if atomicDisabled(err) {
			// A process of an older setrelay re-created the bucket
			// without atomic batches; turn them back on and redo.
			if err := ensureAtomic(ctx, ss.js); err != nil {
				return err
			}
		}
		// Lost a race: back off with jitter, read again.
		var jb [1]byte
		_, _ = rand.Read(jb[:])
		select {
		case <-time.After(delay + time.Duration(jb[0])*delay/256):
		case <-ctx.Done():
			return ctx.Err()
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	return errChangeContended
}

func (ss *subjectStore) trySet(ctx context.Context, streamID, key string, subject map[string]any, names []string, next *subjectEntry) error {
	rec, err := ss.readLatest(ctx, key)
	if err != nil {
		return err
	}
	var cur *subjectEntry
	if rec.value != nil {
		cur = &subjectEntry{}
		if json.Unmarshal(rec.value, cur) != nil {
			cur = &subjectEntry{} // damaged: rewritten, counted as nothing
		}
	}
	if sameState(cur, next, names != nil) {
		return nil
	}
	writes := []pendingWrite{{key: key, expect: rec.seq}}
	if next != nil {
		writes[0].value, _ = json.Marshal(next)
	}
	from, to := contributionOf(cur), contributionOf(next)
	if names != nil && from != to {
		shape := shapeOf(names)
		var failed error
		subsets(names, func(k []string) bool {
			ikey := projectionKey(streamID, project(subject, k))
			r, err := ss.readLatest(ctx, ikey)
			if err != nil {
				failed = err
				return false
			}
			entry := indexEntry{}
			if r.value != nil {
				_ = json.Unmarshal(r.value, &entry) // damaged reads as empty
			}
			c, known := entry[shape]
			if !known && to != contribNone && len(entry) >= maxShapes {
				failed = badRequest("%v", errTooManyShapes)
				return false
			}
			c.move(from, -1)
			c.move(to, +1)
			if c == (shapeCounts{}) {
				delete(entry, shape)
			} else {
				entry[shape] = c
			}
			w := pendingWrite{key: ikey, expect: r.seq}
			if len(entry) > 0 {
				w.value, _ = json.Marshal(entry)
			}
			writes = append(writes, w)
			return true
		})
		if failed != nil {
			return failed
		}
	}
	return ss.commitBatch(ctx, writes)
}

// move changes the count of class c by d; counts never go below zero (a
// decrement of nothing would mean a damaged entry, and zero is what a
// correct one would say after it).
func (c *shapeCounts) move(class contribution, d int64) {
	switch class {
	case contribAdded:
		c.Added = max(0, c.Added+d)
	case contribRemoved:
		c.Removed = max(0, c.Removed+d)
	}
}

// atomicDisabled reports a batch refused because the bucket's stream does
// not allow atomic batches.
func atomicDisabled(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrCodeAtomicPublishDisabled
}

// nats-server's error codes for atomic batches (jetstream_errors_generated.go).
const (
	jsErrCodeAtomicPublishDisabled        jetstream.ErrorCode = 10174
	jsErrCodeAtomicPublishIncompleteBatch jetstream.ErrorCode = 10176
	jsErrCodeAtomicPublishTooManyInflight jetstream.ErrorCode = 10210
)

// batchRetryable reports a batch refused for a passing reason: the server
// had too many batches open, or did not get all of this one (a leader
// change, a lost message). Nothing of it was written, so it is redone.
func batchRetryable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jsErrCodeAtomicPublishIncompleteBatch || apiErr.ErrorCode == jsErrCodeAtomicPublishTooManyInflight)
}

// ensureAtomic lets the subjects bucket's stream take atomic batches
// (nats-server 2.12 or later). KV bucket options cannot say so, and
// CreateOrUpdateKeyValue writes the stream's whole configuration, so it
// is set on the stream afterwards, and again whenever a batch finds it
// off.
func ensureAtomic(ctx context.Context, js jetstream.JetStream) error {
	st, err := js.Stream(ctx, "KV_"+SubjectsBucket)
	if err != nil {
		return fmt.Errorf("ssf: bucket %s: %w", SubjectsBucket, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.AllowAtomicPublish {
		return nil
	}
	cfg.AllowAtomicPublish = true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("ssf: bucket %s: allow atomic batches (needs nats-server 2.12 or later): %w", SubjectsBucket, err)
	}
	return nil
}

// complexMatch folds the index's answer for an event about a complex
// subject into added and removed: one look-up per non-empty subset of the
// event's members. On a stream whose subjects predate the index (legacy),
// the records of those subsets are read too, as before the index, and
// count when they were never indexed.
func (ss *subjectStore) complexMatch(ctx context.Context, st *Stream, event map[string]any) (added, removed bool, err error) {
	names := sortedNames(event)
	subsets(names, func(k []string) bool {
		proj := project(event, k)
		var e jetstream.KeyValueEntry
		e, err = ss.kv.Get(ctx, projectionKey(st.ID, proj))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
			err = nil
		case err != nil:
			err = fmt.Errorf("ssf: subject index: %w", err)
			return false
		default:
			var entry indexEntry
			if json.Unmarshal(e.Value(), &entry) == nil {
				for shape, c := range entry {
					if (c.Added > 0 || c.Removed > 0) && meetsIn(shape, k, event) {
						added = added || c.Added > 0
						removed = removed || c.Removed > 0
					}
				}
			}
		}
		if !st.SubjectIndex {
			var se *subjectEntry
			if se, err = ss.record(ctx, subjectKey(st.ID, proj)); err != nil {
				return false
			}
			if se != nil && !se.Indexed {
				added = added || (se.State == subjectAdded && se.Verified)
				removed = removed || se.State == subjectRemoved
			}
		}
		return !removed // a removed match decides
	})
	return added, removed, err
}

// record reads a subject record for matching; nil when absent.
func (ss *subjectStore) record(ctx context.Context, key string) (*subjectEntry, error) {
	e, err := ss.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ssf: subject look-up: %w", err)
	}
	var se subjectEntry
	if json.Unmarshal(e.Value(), &se) != nil {
		return nil, nil
	}
	return &se, nil
}
