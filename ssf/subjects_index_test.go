package ssf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/queue"
)

// These tests run against a real embedded JetStream (queue.StartEmbedded,
// the server internal/testenv starts; testenv itself imports this package
// through config, so an internal test cannot use it).

// subjectsEnv starts a server with the subjects bucket and returns a
// function that opens a subject store on a connection of its own, as a
// separate setrelay process would have.
func subjectsEnv(t testing.TB) func() *subjectStore {
	t.Helper()
	srv, err := queue.StartEmbedded(queue.Config{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	open := func() *subjectStore {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			t.Fatal(err)
		}
		_, kv, _, err := openBuckets(ctx, js, 1, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return newSubjectStore(js, kv)
	}
	return open
}

var streamSeq int

// newTestStream is a stream id of the stream registry's form (32 hex).
func newTestStream() *Stream {
	streamSeq++
	return &Stream{ID: fmt.Sprintf("%032x", streamSeq), HasSubjects: true, SubjectIndex: true}
}

func opaque(id string) map[string]any { return map[string]any{"format": "opaque", "id": id} }
func mail(e string) map[string]any    { return map[string]any{"format": "email", "email": e} }

// cx is a complex subject in the SSF 1.0 form: name, member, name, member...
func cx(kv ...any) map[string]any {
	out := map[string]any{"format": "complex"}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func added(subject map[string]any) *subjectEntry {
	raw, _ := json.Marshal(subject)
	return &subjectEntry{Subject: raw, Verified: true, State: subjectAdded}
}

func removedEntry(subject map[string]any) *subjectEntry {
	raw, _ := json.Marshal(subject)
	return &subjectEntry{Subject: raw, State: subjectRemoved}
}

func mustSet(t testing.TB, ss *subjectStore, st *Stream, subject map[string]any, next *subjectEntry) {
	t.Helper()
	if err := setRetrying(ss, st, subject, next); err != nil {
		t.Fatal(err)
	}
}

// setRetrying changes a subject, retrying as the 503's Retry-After tells
// a client to.
func setRetrying(ss *subjectStore, st *Stream, subject map[string]any, next *subjectEntry) error {
	for {
		err := ss.set(context.Background(), st.ID, normalise(subject), next)
		if errors.Is(err, errChangeContended) {
			continue
		}
		if err != nil {
			return fmt.Errorf("set %v: %w", subject, err)
		}
		return nil
	}
}

func mustWant(t testing.TB, ss *subjectStore, st *Stream, def string, event map[string]any) bool {
	t.Helper()
	ok, err := ss.wants(context.Background(), st, def, event)
	if err != nil {
		t.Fatalf("wants %v: %v", event, err)
	}
	return ok
}

// checkIndexExact rebuilds the index a stream's records imply and fails
// unless the stored index entries are exactly that: every count equal,
// no entry missing, none extra.
func checkIndexExact(t testing.TB, ss *subjectStore, streamID string) {
	t.Helper()
	ctx := context.Background()
	want := map[string]indexEntry{}
	for _, key := range listKeys(t, ss, streamID+".*") {
		se, err := ss.record(ctx, key)
		if err != nil || se == nil {
			t.Fatalf("record %s: %v", key, err)
		}
		var subject map[string]any
		if err := json.Unmarshal(se.Subject, &subject); err != nil {
			t.Fatalf("record %s: %v", key, err)
		}
		subject = normalise(subject)
		c := contributionOf(se)
		if !isComplex(subject) || c == contribNone {
			continue
		}
		names := sortedNames(subject)
		subsets(names, func(k []string) bool {
			ikey := projectionKey(streamID, project(subject, k))
			if want[ikey] == nil {
				want[ikey] = indexEntry{}
			}
			sc := want[ikey][shapeOf(names)]
			sc.move(c, 1)
			want[ikey][shapeOf(names)] = sc
			return true
		})
	}
	got := map[string]indexEntry{}
	for _, key := range listKeys(t, ss, streamID+".x.*") {
		e, err := ss.kv.Get(ctx, key)
		if err != nil {
			t.Fatalf("index entry %s: %v", key, err)
		}
		var entry indexEntry
		if err := json.Unmarshal(e.Value(), &entry); err != nil {
			t.Fatalf("index entry %s: %v", key, err)
		}
		got[key] = entry
	}
	if len(got) != len(want) {
		t.Fatalf("index has %d entries, the records imply %d", len(got), len(want))
	}
	for key, w := range want {
		g := got[key]
		if len(g) != len(w) {
			t.Fatalf("index entry %s: %v, the records imply %v", key, g, w)
		}
		for shape, c := range w {
			if g[shape] != c {
				t.Fatalf("index entry %s shape %s: %+v, the records imply %+v", key, shape, g[shape], c)
			}
		}
	}
}

func listKeys(t testing.TB, ss *subjectStore, filter string) []string {
	t.Helper()
	lister, err := ss.kv.ListKeysFiltered(context.Background(), filter)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	return out
}

// oracle decides an event the slow way, from every record, with the pure
// rule: what wants must answer.
func oracle(t testing.TB, ss *subjectStore, streamID, def string, event map[string]any) bool {
	t.Helper()
	var add, rem bool
	for _, key := range listKeys(t, ss, streamID+".*") {
		se, _ := ss.record(context.Background(), key)
		var subject map[string]any
		_ = json.Unmarshal(se.Subject, &subject)
		if !subjectsMatch(normalise(subject), event) {
			continue
		}
		add = add || (se.State == subjectAdded && se.Verified)
		rem = rem || se.State == subjectRemoved
	}
	return !rem && (add || def == DefaultSubjectsAll)
}

// TestSubjectsMatchRule is SSF 1.0 §8.1.3.1, checked on the pure rule and
// on the stored index in both directions (each side stored, the other the
// event), both as an added subject under NONE and as a removed one under
// ALL, including the spec's three examples.
func TestSubjectsMatchRule(t *testing.T) {
	open := subjectsEnv(t)
	ss := open()
	T, U := opaque("example-a38h4792-uw2"), mail("jdoe@example.com")
	for _, c := range []struct {
		name          string
		stored, event map[string]any
		want          bool
	}{
		// The three examples of §8.1.3.1.
		{"spec: receiver less restrictive", cx("tenant", T), cx("tenant", T, "user", U), true},
		{"spec: receiver more restrictive", cx("user", U, "device", map[string]any{"format": "ip-addresses", "ip-addresses": []any{"10.29.37.75"}}), cx("user", U), true},
		{"spec: no match", cx("user", U, "group", map[string]any{"format": "did", "url": "did:example:123456"}), cx("user", U, "group", map[string]any{"format": "did", "url": "did:example:9999999"}), false},

		{"identical complex", cx("tenant", T, "user", U), cx("tenant", T, "user", U), true},
		{"event has the tenant only", cx("tenant", T, "user", U), cx("tenant", T), true},
		{"event has the user only", cx("tenant", T, "user", U), cx("user", U), true},
		{"other user, same tenant", cx("tenant", T, "user", U), cx("tenant", T, "user", mail("v@example.com")), false},
		{"other tenant only", cx("tenant", T, "user", U), cx("tenant", opaque("X")), false},
		{"each has a member the other lacks", cx("tenant", T, "user", U), cx("user", U, "device", opaque("D")), true},
		{"conflict beside a shared member", cx("tenant", T, "user", U, "device", opaque("D")), cx("user", U, "device", opaque("E")), false},
		{"disjoint member names", cx("tenant", T), cx("user", U), false},
		{"same name, other format", cx("user", U), cx("user", opaque("jdoe@example.com")), false},
		{"members-only form equals format complex", map[string]any{"tenant": T}, cx("tenant", T, "user", U), true},
		{"simple identical", mail("a@example.com"), mail("a@example.com"), true},
		{"simple different", mail("a@example.com"), mail("b@example.com"), false},
		{"simple vs complex with it as a member", mail("a@example.com"), cx("user", mail("a@example.com")), false},
		{"eight members, event has one", cx("a", opaque("1"), "b", opaque("2"), "c", opaque("3"), "d", opaque("4"), "e", opaque("5"), "f", opaque("6"), "g", opaque("7"), "h", opaque("8")), cx("e", opaque("5")), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := subjectsMatch(normalise(c.stored), normalise(c.event)); got != c.want {
				t.Fatalf("rule(%v, %v) = %v, want %v", c.stored, c.event, got, c.want)
			}
			if got := subjectsMatch(normalise(c.event), normalise(c.stored)); got != c.want {
				t.Fatalf("rule is not symmetric for %v, %v", c.stored, c.event)
			}
			for _, dir := range [][2]map[string]any{{c.stored, c.event}, {c.event, c.stored}} {
				stored, event := dir[0], dir[1]
				st := newTestStream()
				mustSet(t, ss, st, stored, added(stored))
				if got := mustWant(t, ss, st, DefaultSubjectsNone, event); got != c.want {
					t.Fatalf("NONE, added %v, event %v: delivered %v, want %v", stored, event, got, c.want)
				}
				mustSet(t, ss, st, stored, removedEntry(stored))
				if got := mustWant(t, ss, st, DefaultSubjectsAll, event); got != !c.want {
					t.Fatalf("ALL, removed %v, event %v: delivered %v, want %v", stored, event, got, !c.want)
				}
				checkIndexExact(t, ss, st.ID)
				mustSet(t, ss, st, stored, nil)
				if got := mustWant(t, ss, st, DefaultSubjectsNone, event); got {
					t.Fatalf("after removal under NONE, event %v still delivered", event)
				}
				if keys := listKeys(t, ss, st.ID+".>"); len(keys) != 0 {
					t.Fatalf("keys left after the only subject went: %v", keys)
				}
			}
		})
	}
}

// A removed match wins over an added one, an unverified add opens
// nothing, and an event with more members than the index looks up is not
// delivered where subjects exist.
func TestSubjectsMatchCombinations(t *testing.T) {
	open := subjectsEnv(t)
	ss := open()
	T, U, V := opaque("T"), mail("u@example.com"), mail("v@example.com")
	st := newTestStream()
	mustSet(t, ss, st, cx("tenant", T), added(cx("tenant", T)))
	mustSet(t, ss, st, cx("tenant", T, "user", U), removedEntry(cx("tenant", T, "user", U)))
	raw, _ := json.Marshal(cx("user", V, "device", opaque("D")))
	mustSet(t, ss, st, cx("user", V, "device", opaque("D")), &subjectEntry{Subject: raw, State: subjectAdded, Verified: false})
	for _, c := range []struct {
		event map[string]any
		want  bool
	}{
		{cx("tenant", T, "user", U), false}, // matches both: removed wins
		{cx("tenant", T), false},            // {T, U} removed matches it too
		{cx("tenant", T, "user", V), true},  // {T} added; {T, U} conflicts on user
		{cx("user", V), false},              // only the unverified subject
	} {
		if got := mustWant(t, ss, st, DefaultSubjectsNone, c.event); got != c.want {
			t.Errorf("event %v: delivered %v, want %v", c.event, got, c.want)
		}
	}
	wide := cx()
	for i := range maxComplexMembers + 1 {
		wide[fmt.Sprintf("m%d", i)] = opaque("x")
	}
	wide["tenant"] = T
	n := 0
	ss.tooWide = func() { n++ }
	if mustWant(t, ss, st, DefaultSubjectsAll, wide) || n != 1 {
		t.Fatalf("an event with %d members was delivered or not counted (%d)", len(wide)-1, n)
	}
	checkIndexExact(t, ss, st.ID)
}

// Two clients (connections of their own, as two setrelay processes) add
// and remove overlapping subjects at once, one hot tenant shared by all.
// Afterwards the index equals what the records imply, every decision
// equals the rule applied to every record, and removing everything leaves
// no index entry and no match.
func TestSubjectIndexConcurrentChangesStayExact(t *testing.T) {
	open := subjectsEnv(t)
	clients := []*subjectStore{open(), open()}
	st := newTestStream()
	T := opaque("hot-tenant")
	var pool []map[string]any
	for j := range 6 {
		u := mail(fmt.Sprintf("u%d@example.com", j))
		pool = append(pool, cx("tenant", T, "user", u), cx("user", u, "device", opaque(fmt.Sprintf("d%d", j%2))), u)
	}
	pool = append(pool, cx("tenant", T), cx("device", opaque("d0")))
	states := func(s map[string]any, r *rand.Rand) *subjectEntry {
		switch r.IntN(4) {
		case 0:
			return added(s)
		case 1:
			e := added(s)
			e.Verified = false
			return e
		case 2:
			return removedEntry(s)
		}
		return nil
	}
	concurrently(t, 4, func(w int) error {
		r := rand.New(rand.NewPCG(uint64(w), 7))
		ss := clients[w%2]
		for range 60 {
			s := pool[r.IntN(len(pool))]
			if err := setRetrying(ss, st, s, states(s, r)); err != nil {
				return err
			}
		}
		return nil
	})
	checkIndexExact(t, clients[0], st.ID)
	probes := []map[string]any{cx("tenant", T), cx("device", opaque("d0")), cx("device", opaque("d1")), cx("tenant", T, "device", opaque("d1"))}
	for j := range 7 {
		u := mail(fmt.Sprintf("u%d@example.com", j))
		probes = append(probes, u, cx("user", u), cx("tenant", T, "user", u), cx("user", u, "device", opaque("d0")))
	}
	checkDecisionsFollowRecords(t, clients[1], clients[0], st, probes)

	// Everything removed, concurrently, twice over: nothing is left.
	concurrently(t, 2, func(w int) error {
		for _, s := range pool {
			if err := setRetrying(clients[w], st, s, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if keys := listKeys(t, clients[0], st.ID+".>"); len(keys) != 0 {
		t.Fatalf("keys left after removing every subject: %v", keys)
	}
	for _, p := range probes {
		if mustWant(t, clients[0], st, DefaultSubjectsNone, p) {
			t.Fatalf("event %v delivered after every subject was removed", p)
		}
	}
}

// A change interrupted after part of its batch was sent (the process
// dies before the commit) changes nothing; retried by another process it
// counts once; repeated after it committed (the answer was lost) it is a
// no-op.
func TestSubjectIndexInterruptedChangeRetried(t *testing.T) {
	open := subjectsEnv(t)
	first, second := open(), open()
	st := newTestStream()
	T, U := opaque("T"), mail("u@example.com")
	subject := cx("tenant", T, "user", U)
	ctx := context.Background()

	crashed := errors.New("process died before the commit")
	first.crash = func() error { return crashed }
	if err := first.set(ctx, st.ID, normalise(subject), added(subject)); !errors.Is(err, crashed) {
		t.Fatalf("interrupted add: %v", err)
	}
	if keys := listKeys(t, second, st.ID+".>"); len(keys) != 0 {
		t.Fatalf("an uncommitted batch left keys: %v", keys)
	}
	if mustWant(t, second, st, DefaultSubjectsNone, cx("tenant", T)) {
		t.Fatal("an uncommitted add opened the stream")
	}

	// The retry, by another process, immediately (the abandoned batch
	// holds nothing).
	mustSet(t, second, st, subject, added(subject))
	checkIndexExact(t, second, st.ID)
	if !mustWant(t, second, st, DefaultSubjectsNone, cx("tenant", T)) {
		t.Fatal("the retried add does not match {tenant: T}")
	}

	// The add committed, but its answer was lost: the client repeats it.
	info, _ := second.js.Stream(ctx, "KV_"+SubjectsBucket)
	before := info.CachedInfo().State.LastSeq
	mustSet(t, second, st, subject, added(subject))
	info, _ = second.js.Stream(ctx, "KV_"+SubjectsBucket)
	if after := info.CachedInfo().State.LastSeq; after != before {
		t.Fatalf("repeating a done add wrote %d messages", after-before)
	}
	checkIndexExact(t, second, st.ID)

	// An interrupted removal leaves the subject counted as added.
	if err := first.set(ctx, st.ID, normalise(subject), removedEntry(subject)); !errors.Is(err, crashed) {
		t.Fatalf("interrupted remove: %v", err)
	}
	checkIndexExact(t, second, st.ID)
	if !mustWant(t, second, st, DefaultSubjectsNone, cx("user", U)) {
		t.Fatal("an uncommitted removal took effect")
	}
	first.crash = nil
	mustSet(t, first, st, subject, removedEntry(subject))
	mustSet(t, first, st, subject, removedEntry(subject))
	checkIndexExact(t, second, st.ID)
	if mustWant(t, second, st, DefaultSubjectsAll, cx("user", U)) {
		t.Fatal("the retried removal does not stop {user: U}")
	}
}

// Records written before the index (no "indexed", stream without
// SubjectIndex) keep matching as they did (stored ⊆ event), and a change
// through the index moves them into it, counted once.
func TestSubjectIndexLegacyRecords(t *testing.T) {
	open := subjectsEnv(t)
	ss := open()
	ctx := context.Background()
	st := newTestStream()
	st.SubjectIndex = false
	T, U := opaque("T"), mail("u@example.com")
	legacy := cx("tenant", T, "user", U)
	raw, _ := json.Marshal(legacy)
	b, _ := json.Marshal(struct {
		Subject  json.RawMessage `json:"subject"`
		Verified bool            `json:"verified"`
		State    string          `json:"state"`
	}{raw, true, subjectAdded})
	if _, err := ss.kv.Put(ctx, subjectKey(st.ID, normalise(legacy)), b); err != nil {
		t.Fatal(err)
	}
	if !mustWant(t, ss, st, DefaultSubjectsNone, cx("tenant", T, "user", U, "device", opaque("D"))) {
		t.Fatal("a legacy record no longer matches an event with more members")
	}
	if mustWant(t, ss, st, DefaultSubjectsNone, cx("tenant", T)) {
		t.Fatal("a legacy record matched an event with fewer members before it was indexed")
	}
	// Adding it again indexes it: now both directions.
	mustSet(t, ss, st, legacy, added(legacy))
	checkIndexExact(t, ss, st.ID)
	if !mustWant(t, ss, st, DefaultSubjectsNone, cx("tenant", T)) {
		t.Fatal("re-added legacy subject does not match {tenant: T}")
	}
	// Removing it takes it out of the index, and the legacy read path
	// sees the record as indexed (so it does not count it twice).
	mustSet(t, ss, st, legacy, nil)
	checkIndexExact(t, ss, st.ID)
	if mustWant(t, ss, st, DefaultSubjectsNone, cx("tenant", T, "user", U)) {
		t.Fatal("removed subject still matches")
	}
}

// The shapes of one index entry are bounded; subjects sharing a shape are
// not.
func TestSubjectIndexShapeBound(t *testing.T) {
	open := subjectsEnv(t)
	ss := open()
	st := newTestStream()
	T := opaque("T")
	for i := range maxShapes {
		s := cx("tenant", T, fmt.Sprintf("m%d", i), opaque("x"))
		mustSet(t, ss, st, s, added(s))
	}
	s := cx("tenant", T, "one-too-many", opaque("x"))
	err := ss.set(context.Background(), st.ID, normalise(s), added(s))
	var ae *apiError
	if !errors.As(err, &ae) || ae.status != 400 || !strings.Contains(ae.msg, "member name combinations") {
		t.Fatalf("shape %d: %v, want a 400", maxShapes+1, err)
	}
	// More subjects of a known shape are fine.
	for i := range 3 {
		s := cx("tenant", T, "m0", opaque(fmt.Sprint(i)))
		mustSet(t, ss, st, s, added(s))
	}
	checkIndexExact(t, ss, st.ID)
}

// concurrently runs f(0) to f(n-1) at once and fails t with the first
// error any of them returns, once all have ended.
func concurrently(t *testing.T, n int, f func(w int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(w); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// checkDecisionsFollowRecords asks decide, under both defaults, about every
// probe and compares with what the stored records say (oracle, read
// through records).
func checkDecisionsFollowRecords(t *testing.T, decide, records *subjectStore, st *Stream, probes []map[string]any) {
	t.Helper()
	for _, p := range probes {
		for _, def := range []string{DefaultSubjectsAll, DefaultSubjectsNone} {
			if got, want := mustWant(t, decide, st, def, p), oracle(t, records, st.ID, def, p); got != want {
				t.Errorf("%s, event %v: delivered %v, the records say %v", def, p, got, want)
			}
		}
	}
}
