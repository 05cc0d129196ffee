package receiver

import (
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
	"strings"

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

// verify returns the SET and the warnings about it, or the violations
// found. The error is only for errKeysUnavailable.
func (v *verifier) verify(ctx context.Context, jws string) (*verifiedSET, []violation, []violation, error) {
	payload, alg, kid, viol, err := v.verifyJWS(ctx, jws)
	if err != nil || viol != nil {
		return nil, viol, nil, err
	}
	set, f := v.checkClaims(payload)
	if len(f.rejects) > 0 {
		return nil, f.rejects, nil, nil
	}
	set.alg, set.kid = alg, kid
	return set, nil, f.warns, nil
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
		return nil, "", "", one(finding(VJWSMalformed, fmt.Sprintf("body is not a compact JWS: %d dot-separated parts, want 3 (JWE and JSON serialization are not accepted)", len(parts)))), nil
	}
	raw, derr := base64.RawURLEncoding.DecodeString(parts[0])
	var h jwsHeader
	if derr != nil || json.Unmarshal(raw, &h) != nil {
		return nil, "", "", one(finding(VJWSMalformed, "JOSE header is not base64url-encoded JSON")), nil
	}
	if !slices.Contains(v.cfg.Algorithms, jose.SignatureAlgorithm(h.Alg)) {
		return nil, "", "", one(finding(VAlgNotAllowed, fmt.Sprintf("alg %q is not allowed; this receiver accepts %s", h.Alg, algList(v.cfg.Algorithms)))), nil
	}
	if typ, _ := h.Typ.(string); typ != "secevent+jwt" {
		return nil, "", "", one(finding(VTyp, fmt.Sprintf("JOSE header typ is %s, want exactly \"secevent+jwt\"", jsonText(h.Typ)))), nil
	}
	obj, perr := jose.ParseSignedCompact(jws, v.cfg.Algorithms)
	if perr != nil {
		return nil, "", "", one(finding(VJWSMalformed, "cannot parse the JWS: "+perr.Error())), nil
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
			return nil, "", "", one(finding(VKIDUnknown, fmt.Sprintf("no registered %s key with kid %q", h.Alg, h.Kid))), nil
		}
		return nil, "", "", one(finding(VKIDUnknown, fmt.Sprintf("no registered key can verify alg %s", h.Alg))), nil
	}
	for _, k := range cands {
		if p, verr := obj.Verify(k.Key); verr == nil {
			if rk, ok := k.Key.(*rsa.PublicKey); ok && rk.N.BitLen() < minRSABits {
				return nil, "", "", one(finding(VKeyTooSmall, fmt.Sprintf("signed with a %d-bit RSA key; at least %d bits are required", rk.N.BitLen(), minRSABits))), nil
			}
			return p, h.Alg, h.Kid, nil, nil
		}
	}
	return nil, "", "", one(finding(VSignature, fmt.Sprintf("signature does not verify with any of the %d registered key(s) for alg %s, kid %q", len(cands), h.Alg, h.Kid))), nil
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
