package receiver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// findings collects what one SET breaks: rejections and warnings.
type findings struct {
	rejects, warns []violation
}

func (f *findings) add(kind, format string, a ...any) {
	v := finding(kind, fmt.Sprintf(format, a...))
	if v.fatal {
		f.rejects = append(f.rejects, v)
	} else {
		f.warns = append(f.warns, v)
	}
}

// checkClaims applies the RFC 8417 / SSF 1.0 rules, and the CAEP, RISC and
// SSF event catalogue, to a payload whose signature holds.
func (v *verifier) checkClaims(payload []byte) (*verifiedSET, *findings) {
	f := &findings{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil || c == nil || dec.More() {
		f.add(VClaimsMalformed, "the JWS payload is not one JSON object")
		return nil, f
	}
	set := &verifiedSET{claims: payload}
	// Repeated member names first: encoding/json keeps the last one
	// silently, so without this check the rest would judge a SET other
	// than the one a different parser sees.
	for _, d := range duplicateMembers(payload) {
		switch {
		case len(d.path) == 1 && d.path[0] == "events":
			f.add(VEventsDuplicate, "event type %q appears twice in events", d.name)
		case len(d.path) == 1 && d.path[0] == "sub_id":
			f.add(VSubIDInvalid, "member %q appears twice (SSF 1.0 §3.3: each member name at most once)", d.name)
		case len(d.path) == 3 && d.path[0] == "events" && d.path[2] == "subject":
			f.add(VSubjectInvalid, "events[%q].subject: member %q appears twice", d.path[1], d.name)
		default:
			f.add(VClaimsDuplicate, "member %q appears twice in %s", d.name, jsonPath(d.path))
		}
	}

	// iss and aud first: their codes tell an operator the configuration is
	// wrong, which matters more than the rest.
	switch iss, ok := c["iss"].(string); {
	case !ok || iss == "":
		f.add(VISSMissing, "iss is missing or not a string")
	case iss != v.cfg.Issuer:
		f.add(VISSMismatch, "iss %q is not the registered issuer %q", iss, v.cfg.Issuer)
	default:
		set.iss = iss
	}
	v.checkAud(c["aud"], f)
	v.checkIAT(c["iat"], v.cfg.Now(), f)

	if jti, ok := c["jti"].(string); !ok || strings.TrimSpace(jti) == "" {
		f.add(VJTIMissing, "jti is missing, empty or not a string")
	} else {
		set.jti = jti
	}
	if _, ok := c["sub"]; ok {
		f.add(VSubPresent, "a SET carrying an SSF event must not have a sub claim; name the subject in sub_id")
	}
	if _, ok := c["exp"]; ok {
		f.add(VExpPresent, "a SET must not have an exp claim (it could pass for an ID token)")
	}
	events := v.checkEvents(c["events"], f)
	for t := range events {
		set.events = append(set.events, t)
	}
	sort.Strings(set.events)
	v.checkSubject(c, events, f)

	switch t, present := c["txn"]; {
	case !present:
		f.add(WTxnMissing, "no txn claim; set it to an identifier of the underlying event")
	default:
		if s, ok := t.(string); !ok || s == "" {
			f.add(VTxnInvalid, "txn is %s; it must be a non-empty string", jsonText(t))
		} else {
			set.txn = s
		}
	}
	if t, present := c["toe"]; present {
		if _, ok := intSeconds(t); !ok {
			f.add(VToeInvalid, "toe is %s; it must be an integer number of seconds", jsonText(t))
		}
	}
	if len(f.rejects) == 0 {
		checkCatalogue(c, events, f)
	}
	return set, f
}

func (v *verifier) checkAud(aud any, f *findings) {
	switch a := aud.(type) {
	case nil:
		f.add(VAudMissing, "aud is missing; want %q", v.cfg.Audience)
	case string:
		if a != v.cfg.Audience {
			f.add(VAudMismatch, "aud %q is not this receiver's audience %q", a, v.cfg.Audience)
		}
	case []any:
		for _, e := range a {
			if s, _ := e.(string); s == v.cfg.Audience {
				return
			}
		}
		f.add(VAudMismatch, "aud %s does not contain this receiver's audience %q", jsonText(a), v.cfg.Audience)
	default:
		f.add(VAudMismatch, "aud must be a string or an array of strings containing %q", v.cfg.Audience)
	}
}

// millisThreshold: an iat at or above it is a milliseconds timestamp in all
// likelihood (1e11 seconds is the year 5138; 1e11 ms is 1973).
const millisThreshold = 100_000_000_000

func (v *verifier) checkIAT(iat any, now time.Time, f *findings) {
	if iat == nil {
		f.add(VIATMissing, "iat is missing")
		return
	}
	sec, ok := intSeconds(iat)
	switch {
	case !ok:
		f.add(VIATNotInteger, "iat %s is not an integer NumericDate in seconds", jsonText(iat))
	case sec >= millisThreshold:
		f.add(VIATMillis, "iat %d looks like milliseconds; NumericDate is seconds since the epoch", sec)
	case time.Unix(sec, 0).After(now.Add(v.cfg.ClockSkew)):
		f.add(VIATFuture, "iat %d is %s in the future (allowed skew %s)", sec, time.Unix(sec, 0).Sub(now).Round(time.Second), v.cfg.ClockSkew)
	}
}

func intSeconds(x any) (int64, bool) {
	n, ok := x.(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	return i, err == nil
}

func (v *verifier) checkEvents(ev any, f *findings) map[string]map[string]any {
	if ev == nil {
		f.add(VEventsMissing, "events is missing")
		return nil
	}
	m, ok := ev.(map[string]any)
	if !ok || len(m) == 0 {
		f.add(VEventsInvalid, "events is %s; it must be a JSON object with at least one event", jsonText(ev))
		return nil
	}
	out := make(map[string]map[string]any, len(m))
	for _, t := range sortedKeys(m) {
		if u, err := url.Parse(t); err != nil || u.Scheme == "" {
			f.add(VEventTypeInvalid, "event type %q is not an absolute URI", t)
		}
		obj, ok := m[t].(map[string]any)
		if !ok {
			f.add(VEventNotObject, "event %q is %s; it must be a JSON object ({} when it has no members)", t, jsonText(m[t]))
			continue
		}
		out[t] = obj
	}
	return out
}

func (v *verifier) checkSubject(c map[string]any, events map[string]map[string]any, f *findings) {
	subID, hasSubID := c["sub_id"]
	if hasSubID {
		if p := v.identifierProblem(subID, true, true); p != "" {
			f.add(VSubIDInvalid, "sub_id: %s", p)
		}
	}
	inEvent := false
	for _, t := range sortedKeys(events) {
		s, ok := events[t]["subject"]
		if !ok {
			continue
		}
		inEvent = true
		if legacySubject(s) {
			f.add(WSubjectTypeLegacy, "events[%q].subject uses \"subject_type\"; new transmitters must name the format with \"format\"", t)
		}
		if p := v.eventSubjectProblem(s); p != "" {
			f.add(VSubjectInvalid, "events[%q].subject: %s", t, p)
		}
	}
	if len(events) == 0 {
		return
	}
	switch v.cfg.SubjectMode {
	case SubjectSubID:
		if !hasSubID {
			f.add(VSubIDMissing, "no top-level sub_id; SSF 1.0 names the primary subject there, even for CAEP and RISC events")
		}
	case SubjectInEvent:
		if !inEvent {
			f.add(VSubjectMissing, "no event carries a \"subject\" object; this receiver (--mode in_event) wants the subject inside the event")
		}
	case SubjectEither:
		switch {
		case !hasSubID && !inEvent:
			f.add(VSubjectMissing, "no subject: want a top-level sub_id (SSF 1.0) or a \"subject\" inside the event")
		case !hasSubID:
			f.add(WSubIDMissing, "the subject is only inside the event; SSF 1.0 transmitters include the top-level sub_id too")
		}
	}
}

// jsonPath renders a member path for messages: "the top level" or
// "events.<type>.subject".
func jsonPath(path []string) string {
	if len(path) == 0 {
		return "the top level"
	}
	return strings.Join(path, ".")
}
