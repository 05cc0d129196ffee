package ssf

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestSubjectStoreScales stores N subjects of the commonest complex shape
// on one stream, all of one tenant (one tenant × N users, {tenant: T,
// user: U_i}; N is 10,000 by default, SETRELAY_SSF_SUBJECTS=1000000 for
// the million), and shows that deciding an event reads the same
// few small index entries whatever N is: the hot tenant is one counter,
// never a list of its users, and nothing is listed or loaded. It also adds
// the N+1st subject of that tenant through the real change protocol (the
// per-member list this replaces refused the 257th).
func TestSubjectStoreScales(t *testing.T) {
	n := 10000
	if v := os.Getenv("SETRELAY_SSF_SUBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	open := subjectsEnv(t)
	writer := open()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	st := newTestStream()
	T := opaque("hot-tenant")
	user := func(i int) map[string]any { return mail(fmt.Sprintf("user%d@example.com", i)) }

	// The first subjects go through the change protocol; the rest are
	// written in bulk in exactly the layout it writes (checked below by
	// recounting from the records), since a million protocol changes on
	// one hot counter would take long.
	const viaProtocol = 100
	start := time.Now()
	for i := range min(viaProtocol, n) {
		s := cx("tenant", T, "user", user(i))
		mustSet(t, writer, st, s, added(s))
	}
	put := func(key string, v any) {
		b, _ := json.Marshal(v)
		if _, err := writer.js.PublishAsync(writer.subjectFor(key), b); err != nil {
			t.Fatal(err)
		}
	}
	shape := shapeOf([]string{"tenant", "user"})
	for i := viaProtocol; i < n; i++ {
		s := normalise(cx("tenant", T, "user", user(i)))
		e := added(cx("tenant", T, "user", user(i)))
		e.Indexed = true
		put(subjectKey(st.ID, s), e)
		put(projectionKey(st.ID, project(s, []string{"user"})), indexEntry{shape: {Added: 1}})
		put(projectionKey(st.ID, s), indexEntry{shape: {Added: 1}})
		if i%1000 == 999 {
			select {
			case <-writer.js.PublishAsyncComplete(): // keep the window bounded
			case <-ctx.Done():
				t.Fatal("storing subjects timed out")
			}
		}
	}
	tenantKey := projectionKey(st.ID, map[string]any{"tenant": T})
	put(tenantKey, indexEntry{shape: {Added: int64(n)}})
	select {
	case <-writer.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("storing subjects timed out")
	}
	t.Logf("stored %d subjects of one tenant in %s", n, time.Since(start).Round(time.Millisecond))
	if n <= 20000 {
		checkIndexExact(t, writer, st.ID)
	}

	// The N+1st subject of the hot tenant, through the protocol.
	extra := cx("tenant", T, "user", mail("newcomer@example.com"))
	mustSet(t, writer, st, extra, added(extra))
	e, err := writer.kv.Get(ctx, tenantKey)
	if err != nil {
		t.Fatal(err)
	}
	var entry indexEntry
	if err := json.Unmarshal(e.Value(), &entry); err != nil || entry[shape].Added != int64(n+1) {
		t.Fatalf("tenant entry after the N+1st subject: %s (%v), want %d added", e.Value(), err, n+1)
	}
	t.Logf("the tenant's index entry, for %d subjects: %d bytes", n+1, len(e.Value()))

	// A worker on a connection of its own decides; its connection's
	// counters show what each decision read.
	worker := open()
	probes := []struct {
		name  string
		event func(i int) map[string]any
		want  bool
	}{
		{"{tenant: T}", func(int) map[string]any { return cx("tenant", T) }, true},
		{"{user: U_i}", func(i int) map[string]any { return cx("user", user(i)) }, true},
		{"{tenant: T, user: U_i}", func(i int) map[string]any { return cx("tenant", T, "user", user(i)) }, true},
		{"{tenant: T, user: U'} not stored", func(i int) map[string]any {
			return cx("tenant", T, "user", mail(fmt.Sprintf("stranger%d@example.com", i)))
		}, false},
		{"{tenant: X}", func(i int) map[string]any { return cx("tenant", opaque(fmt.Sprint("other", i))) }, false},
	}
	const rounds = 200
	for _, p := range probes {
		// Two passes over the same events: the first reads entries the
		// server may have to load from disk, the second finds them in its
		// block cache.
		for _, pass := range []string{"first", "again"} {
			before := worker.nc.Stats()
			start := time.Now()
			for r := range rounds {
				i := (r * 7919) % n
				if got := mustWant(t, worker, st, DefaultSubjectsNone, p.event(i)); got != p.want {
					t.Fatalf("%s (i=%d): delivered %v, want %v", p.name, i, got, p.want)
				}
			}
			per := time.Since(start) / rounds
			after := worker.nc.Stats()
			msgs := float64(after.InMsgs-before.InMsgs) / rounds
			bytes := float64(after.InBytes-before.InBytes) / rounds
			t.Logf("%d subjects, event %s (%s): %s, %.1f reads, %.0f bytes read per decision", n+1, p.name, pass, per.Round(time.Microsecond), msgs, bytes)
			// At most one read per non-empty subset of the event's
			// members (3 for two members), each a small entry: bounded
			// whatever N is.
			if msgs > 3 || bytes > 3*1024 {
				t.Errorf("event %s: %.1f reads and %.0f bytes per decision; the index should need at most 3 small reads", p.name, msgs, bytes)
			}
		}
	}
}
