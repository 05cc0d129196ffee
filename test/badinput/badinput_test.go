// Package badinput proves, end to end against a real embedded JetStream,
// the real worker pool (built by relay.Start) and real HTTP receivers, that
// bad input never blocks the queue, never crashes a worker and never loops.
//
// # Bad intents (TestBadInputCatalogue)
//
// Every kind below is published raw on setrelay.intent, interleaved with
// valid intents. Each must be dead-lettered for the receiver within 1 s of
// its publish, with reason invalid_intent, Attempts 1, its exact bytes kept
// for replay, and an error naming the field (the expected text is in
// cases_test.go); the valid intents published around them must all be
// accepted by the conformance receiver within 2 s of their publish.
//
//   - syntax: malformed JSON, truncated JSON, trailing garbage, two
//     documents, single quotes, typographic quotes, NaN, an empty body,
//     whitespace only, a BOM-prefixed document (named as such), NUL bytes
//     inside a string and after the document, a raw control character in a
//     string;
//   - shape: a JSON array, string, number, null or boolean instead of an
//     object; 10,000 nested arrays (refused past 64 levels); duplicate keys;
//   - wrong member types: id number, type array, subject string, event
//     array, occurred_at number, receivers object, receivers[0] number, txn
//     number, an extra_events entry that is not an object;
//   - unknown members and types: an unknown top-level member, an unknown
//     alias (with a did-you-mean), a typo in an OpenID URI, a private type
//     when private types are not allowed, a missing type;
//   - subjects: unknown member, missing format, unknown format, email
//     without @, phone number not E.164, empty aliases, nested aliases, a
//     complex subject with a format, iss_sub without sub, no subject;
//   - events: credential-change without change_type, bad change_type and
//     initiating_entity enumerations, extra_events repeating the main type;
//   - ids and dates: missing, empty, 129 characters, with a space;
//     occurred_at not RFC 3339; an empty txn;
//   - size and encoding: 65 KiB (over intent.MaxSize); just under 1 MiB
//     (NATS' default max_payload) compact, pretty-printed and with invalid
//     UTF-8, and 256 bytes under max_payload: all but the first are too
//     large for their dead letter (base64 or the record's own fields), which
//     is stored without the bytes and says so, with a 200-byte prefix;
//     invalid UTF-8.
//
// # Misbehaving receivers (TestMisbehavingReceivers)
//
// Each receiver is a real httptest server; retries use initial 20 ms and
// max_attempts 3, a 300 ms push timeout and a 100 ms max_retry_after.
//
//   - 400 with an HTML body, 400 with a JSON array body: permanent http_4xx
//     after 1 attempt, body excerpt kept;
//   - 500 with an 8 MiB body: retried, attempts_exhausted after 3, body
//     excerpt bounded by push.MaxBodyExcerpt (at most push.MaxBodyRead read);
//     200 with an 8 MiB body: delivered;
//   - a 302 to itself (a loop) and a single 302 elsewhere: permanent
//     redirect after 1 request, Location recorded, never followed;
//   - slowloris: a 503 whose body dribbles forever, and headers that never
//     end: each attempt cut by the timeout, attempts_exhausted after 3; a
//     202 whose body dribbles is delivered (the status decides);
//   - TLS with an untrusted certificate: retried (reason tls), then
//     attempts_exhausted with the x509 error as description; TLS with the
//     server's CA configured: delivered;
//   - 401 forever: per attempt one token refresh and one retry (2 requests),
//     attempts_exhausted after 3 with status 401;
//   - 429 with Retry-After of a day: the wait is capped, so it ends as
//     attempts_exhausted with status 429 within seconds.
package badinput

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/receiver"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
	"github.com/setrelay/setrelay/worker"
)

const (
	conformance  = "conformance"
	clientID     = "badinput-client"
	clientSecret = "badinput-secret-0123456789"
	audience     = "https://receiver.example.org/"
)

// deadLetterBound is how soon after its publish a bad intent must be in the
// dead-letter stream (issue 7: under 1 s). deliveryBound is how soon after
// its publish a good intent must be accepted: bad ones around it must not
// delay it. Under the race detector, which slows the ~1 MiB cases' encoding
// several times over, both are widened: that run looks for races, the
// plain run measures the bounds.
var (
	deadLetterBound = time.Second * raceSlowdown
	deliveryBound   = 2 * time.Second * raceSlowdown
)

func TestBadInputCatalogue(t *testing.T) {
	cases := badCases()
	if len(cases) < 30 {
		t.Fatalf("catalogue has %d kinds, want at least 30", len(cases))
	}
	key, keyFile := newKey(t)
	jwks := signer.JWKS(key)
	rcv, err := receiver.New(receiver.Config{
		ClientID: clientID, ClientSecret: clientSecret,
		Issuer: issuer, Audience: audience, Keys: &jwks,
		SubjectMode: receiver.SubjectSubID, Quiet: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rcv.Close)
	srv := httptest.NewServer(rcv.Handler())
	t.Cleanup(srv.Close)

	e := startRelay(t, keyFile, []config.Receiver{{
		Name: conformance, Endpoint: srv.URL + "/events", Audience: config.Audience{audience},
		Key: keyID, Subject: config.PlacementSubID, InsecureHTTP: true,
		Auth:  config.Auth{TokenURL: srv.URL + "/token", ClientID: clientID, ClientSecret: config.Secret(clientSecret)},
		Retry: config.Retry{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, MaxAttempts: 5, MaxAge: time.Hour},
	}})

	ctx := context.Background()
	goodAt := map[string]time.Time{} // intent id -> publish time
	publishGood := func(i int) {
		t.Helper()
		id := fmt.Sprintf("good-%03d", i)
		in := &intent.Intent{ID: id, Type: "caep.session-revoked",
			Subject: map[string]any{"format": "email", "email": fmt.Sprintf("user%d@example.com", i)}}
		goodAt[id] = time.Now()
		if _, err := e.pub.Publish(ctx, in); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
	}
	type sent struct {
		c  badCase
		at time.Time
	}
	bySeq := map[uint64]sent{}
	for i, c := range cases {
		publishGood(i)
		at := time.Now()
		ack, err := e.pub.PublishRaw(ctx, "bad-"+c.name, c.data, nil)
		if err != nil {
			t.Fatalf("%s: publish %d bytes: %v", c.name, len(c.data), err)
		}
		bySeq[ack.Sequence] = sent{c, at}
	}
	publishGood(len(cases))

	waitFor(t, 20*time.Second, func() string {
		return fmt.Sprintf("%d of %d dead letters, %d of %d accepted, %d intents left",
			len(e.deadLetters(conformance)), len(cases), len(rcv.Accepted()), len(goodAt), e.intentsLeft())
	}, func() bool {
		return len(e.deadLetters(conformance)) >= len(cases) && len(rcv.Accepted()) >= len(goodAt) && e.intentsLeft() == 0
	})

	dls := e.deadLetters(conformance)
	if len(dls) != len(cases) {
		t.Errorf("%d dead letters, want exactly %d (one per bad kind)", len(dls), len(cases))
	}
	var slowest time.Duration
	for _, dl := range dls {
		s, ok := bySeq[dl.StreamSeq]
		if !ok {
			t.Errorf("dead letter for stream seq %d (intent %q, reason %s, %v) is not a bad kind", dl.StreamSeq, dl.IntentID, dl.Reason, dl.Errors)
			continue
		}
		delete(bySeq, dl.StreamSeq)
		c := s.c
		lat := dl.Stored.Sub(s.at)
		slowest = max(slowest, lat)
		t.Run(c.name, func(t *testing.T) {
			if dl.Reason != worker.ReasonInvalidIntent {
				t.Errorf("reason %q, want %q", dl.Reason, worker.ReasonInvalidIntent)
			}
			text := strings.Join(dl.Errors, "\n")
			if !strings.Contains(text, c.want) {
				t.Errorf("errors %q do not contain %q", dl.Errors, c.want)
			}
			if !strings.Contains(dl.Description, c.want) {
				t.Errorf("description %q does not contain %q", dl.Description, c.want)
			}
			// The list is stored once, in errors; the description names
			// the first problem and counts the rest.
			if len(dl.Errors) > 1 && strings.Contains(dl.Description, dl.Errors[1]) {
				t.Errorf("description %.200q repeats the errors list", dl.Description)
			}
			if len(dl.Errors) > intent.MaxProblems+1 {
				t.Errorf("%d errors kept, over intent.MaxProblems", len(dl.Errors))
			}
			if lat > deadLetterBound {
				t.Errorf("dead-lettered %v after publish, want under %v", lat, deadLetterBound)
			}
			if dl.Attempts != 1 {
				t.Errorf("attempts %d, want 1: an invalid intent is never retried", dl.Attempts)
			}
			if c.notKept {
				if len(dl.Intent) != 0 || !strings.Contains(dl.Description, "intent bytes are not kept") {
					t.Errorf("dead letter keeps %d bytes, description %.200q; want none, and saying so", len(dl.Intent), dl.Description)
				}
			} else if !bytes.Equal(dl.Intent, c.data) {
				t.Errorf("dead letter keeps %d bytes, want the %d published, byte for byte", len(dl.Intent), len(c.data))
			}
			if dl.DecodeError != "" {
				t.Errorf("dead letter does not decode: %s", dl.DecodeError)
			}
		})
	}
	for _, s := range bySeq {
		t.Errorf("%s: not dead-lettered", s.c.name)
	}

	var slowestGood time.Duration
	for id, at := range goodAt {
		rec, ok := rcv.Lookup(set.JTI(id, conformance, ""))
		if !ok {
			t.Errorf("good intent %s was not accepted by the receiver", id)
			continue
		}
		lat := rec.ReceivedAt.Sub(at)
		slowestGood = max(slowestGood, lat)
		if lat > deliveryBound {
			t.Errorf("good intent %s accepted %v after publish, want under %v", id, lat, deliveryBound)
		}
	}
	if st := rcv.Stats(); len(rcv.Accepted()) != len(goodAt) {
		t.Errorf("receiver accepted %d SETs, want %d; stats %+v", len(rcv.Accepted()), len(goodAt), st)
	}
	t.Logf("%d bad kinds dead-lettered, slowest %v after publish; %d good intents accepted, slowest %v",
		len(cases), slowest, len(goodAt), slowestGood)
}
