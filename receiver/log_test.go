package receiver

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestLogLinePerSET: one readable line per SET, with what an operator needs
// (jti, events, err, description) and never the token or client secret.
func TestLogLinePerSET(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	h := newLoggedHarness(t, func(c *Config) { c.Quiet = false }, zap.New(core))
	tok := h.token()
	good := claims(h.clock.Now(), "logged-1")
	h.push(tok, h.set(good), nil)
	h.push(tok, h.set(good), nil)
	bad := claims(h.clock.Now(), "logged-2")
	bad["iss"] = "https://evil.example/"
	h.push(tok, h.set(bad), nil)
	h.push("forged-token-value", h.set(good), nil)

	entries := logs.All()
	if len(entries) != 4 {
		t.Fatalf("%d log lines for 4 pushes: %v", len(entries), entries)
	}
	wantMsg := []string{"SET accepted", "SET duplicate (accepted again)", "SET rejected", "SET rejected"}
	for i, e := range entries {
		if e.Message != wantMsg[i] {
			t.Errorf("line %d: %q, want %q", i, e.Message, wantMsg[i])
		}
		for k, v := range e.ContextMap() {
			s, _ := v.(string)
			if strings.Contains(s, tok) || strings.Contains(s, "forged-token-value") || strings.Contains(s, testSecret) {
				t.Errorf("line %d field %s leaks a secret: %q", i, k, s)
			}
		}
	}
	if f := entries[0].ContextMap(); f["jti"] != "logged-1" {
		t.Errorf("accepted line fields %v", f)
	}
	if f := entries[2].ContextMap(); f["err"] != ErrInvalidIssuer || !strings.Contains(f["description"].(string), "evil.example") {
		t.Errorf("rejected line fields %v", f)
	}

	// Quiet: no line per SET.
	core, logs = observer.New(zap.InfoLevel)
	q := newLoggedHarness(t, nil, zap.New(core)) // the harness is Quiet
	q.push(q.token(), q.set(claims(q.clock.Now(), "quiet")), nil)
	if logs.Len() != 0 || q.r.Stats().Accepted != 1 {
		t.Fatalf("quiet receiver logged %d lines, accepted %d", logs.Len(), q.r.Stats().Accepted)
	}
}

// TestWarningsAreLoggedOncePerKind: the first SET to draw a warning of a
// kind is logged with its jti as an example; later ones are only counted,
// even by a quiet receiver, so a transmitter's systematic mistake is one
// line in the log and a counter in /stats.
func TestWarningsAreLoggedOncePerKind(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	h := newLoggedHarness(t, nil, zap.New(core)) // Quiet: no line per SET
	tok := h.token()
	for _, jti := range []string{"w-1", "w-2", "w-3"} {
		c := claims(h.clock.Now(), jti)
		delete(c, "txn")
		if jti == "w-2" {
			c["events"] = map[string]any{caepCredentialChange: map[string]any{"credential_type": "bogus", "change_type": "update"}}
		}
		if resp, body := h.push(tok, h.set(c), nil); resp.StatusCode != 202 {
			t.Fatalf("%s: %d %s", jti, resp.StatusCode, body)
		}
	}
	if st := h.r.Stats(); st.Warnings[WTxnMissing] != 3 || st.Warnings[WEventMemberValue] != 1 {
		t.Fatalf("warnings %v", st.Warnings)
	}
	entries := logs.All()
	if len(entries) != 2 {
		t.Fatalf("%d warning lines, want 2 (one per kind): %v", len(entries), entries)
	}
	want := map[string]string{WTxnMissing: "w-1", WEventMemberValue: "w-2"}
	for _, e := range entries {
		f := e.ContextMap()
		kind, _ := f["kind"].(string)
		if want[kind] == "" || f["example_jti"] != want[kind] || !strings.HasPrefix(f["description"].(string), kind+" (") {
			t.Errorf("warning line %v", f)
		}
		delete(want, kind)
	}
}
