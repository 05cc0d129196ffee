package receiver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// Finding is one rule a SET broke: its kind (see Rules) and what was found.
type Finding struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
}

// Verdict is the receiver's answer to one SET, past the HTTP-level checks.
type Verdict struct {
	JTI string `json:"jti,omitempty"`
	// Status is 202 when accepted, 400 when rejected, and 503 when the
	// verification keys could not be obtained (the receiver's problem).
	Status      int    `json:"status"`
	Err         string `json:"err,omitempty"`         // RFC 8935 err of a rejection
	Description string `json:"description,omitempty"` // every finding's description, as the error body has it
	// Violations are the rejections; under Config.Strict they include the
	// warnings.
	Violations []Finding `json:"violations,omitempty"`
	Warnings   []Finding `json:"warnings,omitempty"`
	// Duplicate: identical claims under a jti already accepted, accepted
	// again as RFC 8935 asks.
	Duplicate bool     `json:"duplicate,omitempty"`
	Events    []string `json:"events,omitempty"`
}

// Accepted reports whether the SET was accepted (202).
func (v Verdict) Accepted() bool { return v.Status == http.StatusAccepted }

// Check verifies one compact SET exactly as POST /events does once the
// request itself (method, token, headers, size) has passed, and records it
// for duplicate detection. Offline checking (setrelay receiver --check)
// uses it, so that it judges SETs by the same code as the endpoint.
func (r *Receiver) Check(ctx context.Context, jws string) Verdict {
	v, _ := r.check(ctx, jws)
	return v
}

func (r *Receiver) check(ctx context.Context, jws string) (Verdict, *verifiedSET) {
	if int64(len(jws)) > r.cfg.MaxBodyBytes {
		return r.rejected([]violation{finding(VBodyTooLarge, fmt.Sprintf("the SET has %d bytes, more than %d", len(jws), r.cfg.MaxBodyBytes))}, nil), nil
	}
	set, viols, warns, err := r.verifier.verify(ctx, jws)
	if err != nil {
		r.log.Warn("cannot verify SET", zap.Error(err))
		return Verdict{Status: http.StatusServiceUnavailable, Description: err.Error()}, nil
	}
	if len(viols) > 0 {
		return r.rejected(viols, nil), nil
	}
	v := Verdict{JTI: set.jti, Events: set.events, Warnings: findingsOf(warns)}
	if p := r.cfg.RejectTxnPrefix; p != "" && strings.HasPrefix(set.txn, p) {
		r.stats.fault(FaultRejectTxn)
		v.Status, v.Err = http.StatusBadRequest, ErrInvalidRequest
		v.Description = fmt.Sprintf("txn %q starts with %q: rejected on purpose (--reject-txn-prefix)", set.txn, p)
		return v, set
	}

	r.mu.Lock()
	prev, seen := r.records[set.jti]
	identical := seen && bytes.Equal(prev.Claims, set.claims)
	keep := !seen && (len(warns) == 0 || !r.cfg.Strict)
	switch {
	case identical:
		prev.Duplicates++
	case keep:
		r.records[set.jti] = &Record{
			JTI: set.jti, Claims: set.claims, Alg: set.alg, KeyID: set.kid,
			Events: set.events, Txn: set.txn, ReceivedAt: r.cfg.Now(),
		}
		r.order = append(r.order, set.jti)
		if len(r.order) > r.cfg.MaxRecords {
			delete(r.records, r.order[0])
			r.order = r.order[1:]
			r.stats.update(func(s *Stats) { s.RecordsEvicted++ })
		}
	}
	r.mu.Unlock()

	switch {
	case seen && !identical:
		return r.rejected([]violation{finding(VJTIReuseMismatch, fmt.Sprintf(
			"jti %q was already accepted with different claims; a retransmission must be identical and a corrected SET needs a new jti", set.jti))}, set), set
	case identical:
		v.Status, v.Duplicate = http.StatusAccepted, true
		r.stats.update(func(s *Stats) { s.Duplicates++ })
		return v, set
	}
	r.warn(set.jti, warns)
	if !keep {
		// Strict: every warning is a rejection.
		strict := make([]violation, len(warns))
		for i, w := range warns {
			strict[i] = violation{kind: w.kind, code: ErrInvalidRequest, desc: w.desc + " (a warning, rejected because this receiver is strict)", fatal: true}
		}
		rv := r.rejected(strict, set)
		rv.Warnings = v.Warnings
		return rv, set
	}
	v.Status = http.StatusAccepted
	var revoke bool
	r.stats.update(func(s *Stats) {
		s.Accepted++
		for _, e := range set.events {
			s.Events[e]++
		}
		revoke = r.cfg.RevokeTokenEvery > 0 && s.Accepted%int64(r.cfg.RevokeTokenEvery) == 0
	})
	if revoke {
		r.RevokeToken()
	}
	return v, set
}

// rejected counts the violations and builds the verdict answering them:
// the first one's status and err, every description.
func (r *Receiver) rejected(viols []violation, set *verifiedSET) Verdict {
	v := Verdict{Status: statusOf(viols[0].kind), Err: viols[0].code, Violations: findingsOf(viols)}
	if set != nil {
		v.JTI, v.Events = set.jti, set.events
	}
	descs := make([]string, len(viols))
	for i, x := range viols {
		descs[i] = x.desc
	}
	v.Description = strings.Join(descs, "; ")
	r.count(kinds(v.Violations)...)
	return v
}

// warn counts warnings and logs each kind the first time it is seen, with
// the jti of that SET as an example; /stats has the counts after that.
func (r *Receiver) warn(jti string, warns []violation) {
	if len(warns) == 0 {
		return
	}
	r.stats.update(func(s *Stats) {
		for _, w := range warns {
			s.Warnings[w.kind]++
		}
	})
	for _, w := range warns {
		r.mu.Lock()
		first := !r.warned[w.kind]
		r.warned[w.kind] = true
		r.mu.Unlock()
		if first {
			r.log.Warn("SET warning (logged once per kind; /stats counts them all)",
				zap.String("kind", w.kind), zap.String("example_jti", jti), zap.String("description", w.desc))
		}
	}
}

func findingsOf(vs []violation) []Finding {
	if len(vs) == 0 {
		return nil
	}
	out := make([]Finding, len(vs))
	for i, v := range vs {
		out[i] = Finding{Kind: v.kind, Description: v.desc}
	}
	return out
}

func kinds(fs []Finding) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Kind
	}
	return out
}
