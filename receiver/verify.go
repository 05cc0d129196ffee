package receiver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// verifiedSET is a SET whose signature and claims passed every check.
type verifiedSET struct {
	claims []byte // the JWS payload, exactly as signed
	alg    string
	kid    string
	iss    string
	jti    string
	txn    string
	events []string // event-type URIs, sorted
}

// errKeysUnavailable means no key set could be obtained at all (a JWKS URL
// that never answered): the receiver's problem, not the transmitter's.
var errKeysUnavailable = errors.New("verification keys unavailable")

// verifier checks one SET: the JWS, then the claims.
type verifier struct {
	cfg  *Config
	keys keySource
}

// verify returns the SET, or the violations found. The error is only for
// errKeysUnavailable.
func (v *verifier) verify(ctx context.Context, jws string) (*verifiedSET, []violation, error) {
	payload, alg, kid, viol, err := v.verifyJWS(ctx, jws)
	if err != nil || viol != nil {
		return nil, viol, err
	}
	set, viols := v.checkClaims(payload)
	if len(viols) > 0 {
		return nil, viols, nil
	}
	set.alg, set.kid = alg, kid
	return set, nil, nil
}

type jwsHeader struct {
	Alg string `json:"alg"`
	Typ any    `json:"typ"`
	Kid string `json:"kid"`
}

func (v *verifier) verifyJWS(ctx context.Context, jws string) (payload []byte, alg, kid string, viol []violation, err error) {
	jws = strings.TrimSpace(jws)
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, "", "", one(reject(VJWSMalformed, ErrInvalidRequest,
			fmt.Sprintf("body is not a compact JWS: %d dot-separated parts, want 3 (JWE and JSON serialization are not accepted)", len(parts)))), nil
	}
	raw, derr := base64.RawURLEncoding.DecodeString(parts[0])
	var h jwsHeader
	if derr != nil || json.Unmarshal(raw, &h) != nil {
		return nil, "", "", one(reject(VJWSMalformed, ErrInvalidRequest, "JOSE header is not base64url-encoded JSON")), nil
	}
	if !slices.Contains(v.cfg.Algorithms, jose.SignatureAlgorithm(h.Alg)) {
		return nil, "", "", one(reject(VAlgNotAllowed, ErrInvalidRequest,
			fmt.Sprintf("alg %q is not allowed; this receiver accepts %s", h.Alg, algList(v.cfg.Algorithms)))), nil
	}
	if typ, _ := h.Typ.(string); typ != "secevent+jwt" {
		return nil, "", "", one(reject(VTyp, ErrInvalidRequest,
			fmt.Sprintf("JOSE header typ is %s, want exactly \"secevent+jwt\" (RFC 8417 §2.3)", jsonText(h.Typ)))), nil
	}
	obj, perr := jose.ParseSignedCompact(jws, v.cfg.Algorithms)
	if perr != nil {
		return nil, "", "", one(reject(VJWSMalformed, ErrInvalidRequest, "cannot parse the JWS: "+perr.Error())), nil
	}
	keys, kerr := v.keys.keys(ctx, "")
	if kerr != nil {
		return nil, "", "", nil, fmt.Errorf("%w: %w", errKeysUnavailable, kerr)
	}
	cands := candidates(keys, h.Kid, h.Alg)
	if len(cands) == 0 && h.Kid != "" {
		// Maybe the transmitter rotated keys: look again (rate-limited).
		if keys, kerr = v.keys.keys(ctx, h.Kid); kerr == nil {
			cands = candidates(keys, h.Kid, h.Alg)
		}
	}
	if len(cands) == 0 {
		if h.Kid != "" {
			return nil, "", "", one(reject(VKIDUnknown, ErrInvalidKey, fmt.Sprintf("no registered %s key with kid %q", h.Alg, h.Kid))), nil
		}
		return nil, "", "", one(reject(VKIDUnknown, ErrInvalidKey, fmt.Sprintf("no registered key can verify alg %s", h.Alg))), nil
	}
	for _, k := range cands {
		if p, verr := obj.Verify(k.Key); verr == nil {
			if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
				return nil, "", "", one(reject(VKeyTooSmall, ErrInvalidKey,
					fmt.Sprintf("signed with a %d-bit RSA key; at least %d bits are required", rk.N.BitLen(), minRSABits))), nil
			}
			return p, h.Alg, h.Kid, nil, nil
		}
	}
	return nil, "", "", one(reject(VSignature, ErrInvalidKey,
		fmt.Sprintf("signature does not verify with any of the %d registered key(s) for alg %s, kid %q", len(cands), h.Alg, h.Kid))), nil
}

// minRSABits is what GOV.UK and the CAEP interoperability profile require.
const minRSABits = 2048

// candidates picks the keys that may have signed a JWS with this kid and
// alg. A kid selects keys with that kid; keys without a kid (PEM keys) are
// the fallback, since GOV.UK-style setups register a bare public key. Without
// a kid, every key is tried, as GOV.UK's own transmitter sends none.
func candidates(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	usable := func(k jose.JSONWebKey) bool {
		return (k.Use == "" || k.Use == "sig") && (k.Algorithm == "" || k.Algorithm == alg) && keyFitsAlg(k, alg)
	}
	var byKID, noKID, all []jose.JSONWebKey
	for _, k := range keys {
		if !usable(k) {
			continue
		}
		all = append(all, k)
		switch k.KeyID {
		case kid:
			byKID = append(byKID, k)
		case "":
			noKID = append(noKID, k)
		}
	}
	switch {
	case kid == "":
		return all
	case len(byKID) > 0:
		return byKID
	default:
		return noKID
	}
}

func keyFitsAlg(k jose.JSONWebKey, alg string) bool {
	switch k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// checkClaims applies the RFC 8417 / SSF rules to a verified payload.
func (v *verifier) checkClaims(payload []byte) (*verifiedSET, []violation) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var c map[string]any
	if err := dec.Decode(&c); err != nil || c == nil || dec.More() {
		return nil, one(reject(VClaimsMalformed, ErrInvalidRequest, "JWS payload is not a JSON object"))
	}
	var vs []violation
	add := func(kind, code, format string, a ...any) {
		vs = append(vs, reject(kind, code, fmt.Sprintf(format, a...)))
	}
	set := &verifiedSET{claims: payload}

	// iss and aud first: their codes tell an operator the configuration is
	// wrong, which matters more than the rest.
	switch iss, ok := c["iss"].(string); {
	case !ok || iss == "":
		add(VISSMissing, ErrInvalidIssuer, "iss is missing or not a string")
	case iss != v.cfg.Issuer:
		add(VISSMismatch, ErrInvalidIssuer, "iss %q is not the registered issuer %q", iss, v.cfg.Issuer)
	default:
		set.iss = iss
	}
	v.checkAud(c["aud"], add)
	now := v.cfg.Now()
	v.checkIAT(c["iat"], now, add)

	if jti, ok := c["jti"].(string); !ok || strings.TrimSpace(jti) == "" {
		add(VJTIMissing, ErrInvalidRequest, "jti is missing, empty or not a string")
	} else {
		set.jti = jti
	}
	events := v.checkEvents(c["events"], add)
	for t := range events {
		set.events = append(set.events, t)
	}
	sort.Strings(set.events)
	v.checkSubject(c, events, add)

	if t, present := c["txn"]; present {
		if s, ok := t.(string); !ok || s == "" {
			add(VTxnInvalid, ErrInvalidRequest, "txn must be a non-empty string")
		} else {
			set.txn = s
		}
	}
	if t, present := c["toe"]; present {
		if _, ok := intSeconds(t); !ok {
			add(VToeInvalid, ErrInvalidRequest, "toe must be a NumericDate: an integer number of seconds")
		}
	}
	return set, vs
}

func (v *verifier) checkAud(aud any, add func(kind, code, format string, a ...any)) {
	switch a := aud.(type) {
	case nil:
		add(VAudMissing, ErrInvalidAudience, "aud is missing; want %q", v.cfg.Audience)
	case string:
		if a != v.cfg.Audience {
			add(VAudMismatch, ErrInvalidAudience, "aud %q is not this receiver's audience %q", a, v.cfg.Audience)
		}
	case []any:
		for _, e := range a {
			if s, _ := e.(string); s == v.cfg.Audience {
				return
			}
		}
		add(VAudMismatch, ErrInvalidAudience, "aud %s does not contain this receiver's audience %q", jsonText(a), v.cfg.Audience)
	default:
		add(VAudMismatch, ErrInvalidAudience, "aud must be a string or an array of strings containing %q", v.cfg.Audience)
	}
}

// millisThreshold: an iat at or above it is a milliseconds timestamp in all
// likelihood (1e11 seconds is the year 5138; 1e11 ms is 1973).
const millisThreshold = 100_000_000_000

func (v *verifier) checkIAT(iat any, now time.Time, add func(kind, code, format string, a ...any)) {
	if iat == nil {
		add(VIATMissing, ErrInvalidRequest, "iat is missing")
		return
	}
	sec, ok := intSeconds(iat)
	switch {
	case !ok:
		add(VIATNotInteger, ErrInvalidRequest, "iat %s is not an integer NumericDate in seconds", jsonText(iat))
	case sec >= millisThreshold:
		add(VIATMillis, ErrInvalidRequest, "iat %d looks like milliseconds; NumericDate is seconds since the epoch (RFC 7519 §2)", sec)
	case time.Unix(sec, 0).After(now.Add(v.cfg.ClockSkew)):
		add(VIATFuture, ErrInvalidRequest, "iat %d is %s in the future (allowed skew %s)", sec, time.Unix(sec, 0).Sub(now).Round(time.Second), v.cfg.ClockSkew)
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

func (v *verifier) checkEvents(ev any, add func(kind, code, format string, a ...any)) map[string]map[string]any {
	if ev == nil {
		add(VEventsMissing, ErrInvalidRequest, "events is missing")
		return nil
	}
	m, ok := ev.(map[string]any)
	if !ok || len(m) == 0 {
		add(VEventsInvalid, ErrInvalidRequest, "events must be a JSON object with at least one event")
		return nil
	}
	out := make(map[string]map[string]any, len(m))
	for _, t := range sortedKeys(m) {
		obj, ok := m[t].(map[string]any)
		if !ok {
			add(VEventNotObject, ErrInvalidRequest, "event %q must be a JSON object ({} when it has no members)", t)
			continue
		}
		out[t] = obj
	}
	return out
}

func (v *verifier) checkSubject(c map[string]any, events map[string]map[string]any, add func(kind, code, format string, a ...any)) {
	subID, hasSubID := c["sub_id"]
	if hasSubID {
		if p := identifierProblem(subID, true); p != "" {
			add(VSubIDInvalid, ErrInvalidRequest, "sub_id: %s", p)
		}
	}
	inEvent := false
	for _, t := range sortedKeys(events) {
		s, ok := events[t]["subject"]
		if !ok {
			continue
		}
		inEvent = true
		if p := identifierProblem(s, false); p != "" {
			add(VSubjectInvalid, ErrInvalidRequest, "events[%q].subject: %s", t, p)
		}
	}
	switch v.cfg.SubjectMode {
	case SubjectSubID:
		if !hasSubID {
			add(VSubIDMissing, ErrInvalidRequest, "sub_id is required at the top level (SSF 1.0)")
		}
		if _, ok := c["sub"]; ok {
			add(VSubPresent, ErrInvalidRequest, "sub must not appear in an SSF SET; use sub_id")
		}
		if _, ok := c["exp"]; ok {
			add(VExpPresent, ErrInvalidRequest, "exp must not appear in an SSF SET")
		}
	case SubjectInEvent:
		if !inEvent && len(events) > 0 {
			add(VSubjectMissing, ErrInvalidRequest, "no event carries a \"subject\" object; this receiver wants the subject inside the event")
		}
	case SubjectEither:
		if !hasSubID && !inEvent && len(events) > 0 {
			add(VSubjectMissing, ErrInvalidRequest, "no subject: want a top-level sub_id or a \"subject\" inside the event")
		}
	}
}

// identifierMembers lists, per RFC 9493 / SSF format, the members an
// identifier must have besides "format"; no others are allowed.
var identifierMembers = map[string][]string{
	"account":           {"uri"},
	"email":             {"email"},
	"phone_number":      {"phone_number"},
	"iss_sub":           {"iss", "sub"},
	"opaque":            {"id"},
	"did":               {"url"},
	"uri":               {"uri"},
	"jwt_id":            {"iss", "jti"},
	"saml_assertion_id": {"issuer", "assertion_id"},
	"ip-addresses":      {"ip-addresses"},
}

var complexMembers = []string{"user", "device", "session", "application", "tenant", "org_unit", "group"}

// identifierProblem returns what is wrong with a subject identifier, or "".
// Inside an event the legacy RISC form {"subject_type": ...} is accepted too,
// because GOV.UK's own example uses it.
func identifierProblem(x any, topLevel bool) string {
	m, ok := x.(map[string]any)
	if !ok {
		return "must be a JSON object"
	}
	if st, ok := m["subject_type"]; ok && !topLevel {
		if s, _ := st.(string); s == "" {
			return "subject_type must be a non-empty string"
		}
		return ""
	}
	format, _ := m["format"].(string)
	switch format {
	case "":
		return "format is missing or not a string"
	case "aliases":
		ids, ok := m["identifiers"].([]any)
		if !ok || len(ids) == 0 || len(m) != 2 {
			return "aliases needs exactly a non-empty identifiers array"
		}
		for i, id := range ids {
			if im, _ := id.(map[string]any); im != nil && im["format"] == "aliases" {
				return fmt.Sprintf("identifiers[%d]: aliases must not nest", i)
			}
			if p := identifierProblem(id, true); p != "" {
				return fmt.Sprintf("identifiers[%d]: %s", i, p)
			}
		}
		return ""
	case "complex":
		n := 0
		for k, val := range m {
			if k == "format" {
				continue
			}
			if !slices.Contains(complexMembers, k) {
				return fmt.Sprintf("member %q is not defined for format complex", k)
			}
			if p := identifierProblem(val, true); p != "" {
				return fmt.Sprintf("%s: %s", k, p)
			}
			n++
		}
		if n == 0 {
			return "complex subject has no members"
		}
		return ""
	}
	want, known := identifierMembers[format]
	if !known {
		return fmt.Sprintf("unknown format %q", format)
	}
	for _, k := range want {
		if format == "ip-addresses" {
			if a, ok := m[k].([]any); !ok || len(a) == 0 {
				return "ip-addresses needs a non-empty ip-addresses array"
			}
			continue
		}
		if s, _ := m[k].(string); s == "" {
			return fmt.Sprintf("format %s needs a non-empty string %q", format, k)
		}
	}
	for k := range m {
		if k != "format" && !slices.Contains(want, k) {
			return fmt.Sprintf("member %q is not defined for format %s", k, format)
		}
	}
	return ""
}

func one(v violation) []violation { return []violation{v} }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func algList(algs []jose.SignatureAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

func jsonText(x any) string {
	if x == nil {
		return "absent"
	}
	b, err := json.Marshal(x)
	if err != nil {
		return fmt.Sprint(x)
	}
	if len(b) > 80 {
		b = append(b[:77], "..."...)
	}
	return string(b)
}
