// Package set builds the claims of an RFC 8417 Security Event Token from a
// validated intent and one receiver's profile.
//
// The claims are deterministic: the same intent, profile and Options give
// the same bytes, so a redelivered intent is re-signed with the same jti
// and identical claims, as RFC 8417 and SSF ask of a retransmission. The
// top-level members are always, in this order: iss, iat, jti, aud, txn,
// toe (if set), sub_id (if placed there), events. "sub" and "exp" are never
// written (SSF 1.0 forbids them).
//
// txn is always written, because SSF 1.0 §4.1.9 says transmitters SHOULD
// set it: the intent's txn, or else the intent's id. The id names the
// underlying event (producers deduplicate on it), so every receiver and
// every replay of one intent carry the same txn, as §4.1.9 asks.
package set

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/setrelay/setrelay/intent"
)

// Placement says where a receiver wants the subject identifier.
type Placement string

const (
	// PlacementSubID puts the subject in the top-level "sub_id" claim, as
	// SSF 1.0 requires.
	PlacementSubID Placement = "sub_id"
	// PlacementInEvent puts it as "subject" inside the main event object,
	// as RISC-era receivers and GOV.UK expect.
	PlacementInEvent Placement = "in_event"
	// PlacementBoth does both, for receivers migrating between the two.
	PlacementBoth Placement = "both"
)

// Valid reports whether p is one of the three placements.
func (p Placement) Valid() bool {
	return p == PlacementSubID || p == PlacementInEvent || p == PlacementBoth
}

// Profile is what one receiver's configuration says about its SETs.
type Profile struct {
	// Receiver is the configured receiver name; it seeds the jti so each
	// receiver's feed has its own.
	Receiver string
	// Issuer is the "iss" claim, the same for every SET of a stream.
	Issuer string
	// Audience is the "aud" claim.
	Audience []string
	// AudienceAsArray writes "aud" as an array even for one audience; by
	// default a single audience is a string (GOV.UK wants a string).
	AudienceAsArray bool
	// Placement says where the subject goes; empty means PlacementSubID,
	// the SSF 1.0 rule.
	Placement Placement
}

// Options are the per-delivery inputs the caller controls.
type Options struct {
	// IssuedAt becomes "iat", in whole seconds. The caller passes a stable
	// time (JetStream's stored time of the message) so a redelivery builds
	// byte-identical claims.
	IssuedAt time.Time
	// ReplayOf is non-empty when an operator replays a dead letter: the
	// replay is a corrected SET and so gets a new jti.
	ReplayOf string
}

// ErrInvalid is wrapped by every Build error. Such errors are permanent for
// the intent and receiver at hand: retrying cannot fix them.
var ErrInvalid = errors.New("cannot build SET claims")

// JTI returns the jti for an intent sent to a receiver: 32 hex characters,
// the first 128 bits of SHA-256 over a versioned, length-prefixed encoding
// of the three inputs (length prefixes keep ("ab","c") and ("a","bc")
// apart). The same inputs always give the same jti; a replay, having a
// non-empty replayOf, gets a different one.
func JTI(intentID, receiver, replayOf string) string {
	var out [32]byte
	return string(appendJTI(out[:0], intentID, receiver, replayOf))
}

const jtiDomain = "setrelay/jti/v1"

func appendJTI(dst []byte, intentID, receiver, replayOf string) []byte {
	// Hash a stack buffer with Sum256 rather than through hash.Hash, which
	// would put the digest on the heap for every SET.
	var scratch [256]byte
	buf := scratch[:0]
	for _, s := range [...]string{jtiDomain, intentID, receiver, replayOf} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	sum := sha256.Sum256(buf)
	return hex.AppendEncode(dst, sum[:16])
}

// Build returns the JSON claims of the SET for in, as the receiver
// described by p wants them. in must have EventType set (intent.Decode and
// Validate do that). Build does not modify in.
//
// An intent without a subject, which Validate refuses for every type but
// a hand-built one may lack, gets no sub_id.
func Build(in *intent.Intent, p Profile, o Options) ([]byte, error) {
	if err := check(in, p, o); err != nil {
		return nil, err
	}
	placement := p.Placement
	if placement == "" {
		placement = PlacementSubID
	}
	hasSubject := in.Subject != nil
	inEvent := hasSubject && (placement == PlacementInEvent || placement == PlacementBoth)
	if inEvent {
		if _, clash := in.Event["subject"]; clash {
			return nil, fmt.Errorf("%w: event already has a \"subject\" member and the receiver wants the subject placed in the event", ErrInvalid)
		}
	}

	// Most SETs fit in 1 KiB; one allocation up front beats regrowing.
	b := make([]byte, 0, 1024)
	b = append(b, `{"iss":`...)
	b = appendString(b, p.Issuer)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, o.IssuedAt.Unix(), 10)
	b = append(b, `,"jti":"`...)
	b = appendJTI(b, in.ID, p.Receiver, o.ReplayOf)
	b = append(b, `","aud":`...)
	if p.AudienceAsArray || len(p.Audience) > 1 {
		b = append(b, '[')
		for i, a := range p.Audience {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a)
		}
		b = append(b, ']')
	} else {
		b = appendString(b, p.Audience[0])
	}
	b = append(b, `,"txn":`...)
	if in.Txn != "" {
		b = appendString(b, in.Txn)
	} else {
		b = appendString(b, in.ID)
	}
	if in.OccurredAt != nil {
		b = append(b, `,"toe":`...)
		b = strconv.AppendInt(b, in.OccurredAt.Unix(), 10)
	}
	var err error
	if hasSubject && placement != PlacementInEvent {
		b = append(b, `,"sub_id":`...)
		if b, err = appendObject(b, in.Subject, "", nil, 1); err != nil {
			return nil, fmt.Errorf("%w: subject.%w", ErrInvalid, err)
		}
	}
	if b, err = appendEvents(b, in, inEvent); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendEvents writes "events": the main event and the extra events, keyed
// by type URI in sorted order like any JSON object here.
func appendEvents(b []byte, in *intent.Intent, inEvent bool) ([]byte, error) {
	b = append(b, `,"events":{`...)
	var arr [8]string
	types := append(arr[:0], in.EventType)
	for t := range in.ExtraEvents {
		types = append(types, t)
	}
	slices.Sort(types)
	for i, t := range types {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, t)
		b = append(b, ':')
		var err error
		if t == in.EventType {
			var subj map[string]any
			key := ""
			if inEvent {
				key, subj = "subject", in.Subject
			}
			b, err = appendObject(b, in.Event, key, subj, 1)
		} else {
			b, err = appendObject(b, in.ExtraEvents[t], "", nil, 1)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: events[%s].%w", ErrInvalid, t, err)
		}
	}
	return append(b, '}'), nil
}

// check rejects what would make a SET no receiver accepts.
func check(in *intent.Intent, p Profile, o Options) error {
	switch {
	case in == nil:
		return fmt.Errorf("%w: no intent", ErrInvalid)
	case in.ID == "":
		return fmt.Errorf("%w: intent has no id (the jti seed)", ErrInvalid)
	case in.EventType == "":
		return fmt.Errorf("%w: intent %q has no resolved event type (decode or validate it first)", ErrInvalid, in.ID)
	case p.Issuer == "":
		return fmt.Errorf("%w: receiver %q has no issuer", ErrInvalid, p.Receiver)
	case len(p.Audience) == 0:
		return fmt.Errorf("%w: receiver %q has no audience", ErrInvalid, p.Receiver)
	case p.Placement != "" && !p.Placement.Valid():
		return fmt.Errorf("%w: receiver %q has subject placement %q (want sub_id, in_event or both)", ErrInvalid, p.Receiver, p.Placement)
	case o.IssuedAt.IsZero():
		return fmt.Errorf("%w: no issue time", ErrInvalid)
	}
	if _, clash := in.ExtraEvents[in.EventType]; clash {
		return fmt.Errorf("%w: extra_events repeats the main event type %s", ErrInvalid, in.EventType)
	}
	return nil
}
