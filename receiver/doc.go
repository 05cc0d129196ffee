// Package receiver is a development Shared Signals Framework receiver: an
// OAuth 2.0 client-credentials token endpoint and an RFC 8935 push endpoint
// that checks every Security Event Token as strictly as a real receiver would
// (GOV.UK One Login's is the model). Teams point setrelay at it before they
// talk to the real receiver; setrelay's own tests and demo use it too. It
// checks the full SET profile of RFC 8417, RFC 8935 and OpenID SSF 1.0:
// every MUST is a rejection, every SHOULD (and the CAEP, RISC and SSF event
// definitions) a warning.
//
// # Routes
//
//	POST /events   RFC 8935 push endpoint: 202 with an empty body, or an error
//	POST /token    OAuth 2.0 client-credentials token endpoint (RFC 6749 §4.4)
//	GET  /stats    counters as JSON (see Stats)
//	GET  /healthz  liveness: "ok"
//
// # Order of checks on /events
//
// The order mirrors where each thing happens in a real deployment, so that a
// transmitter sees what it would see in production:
//
//  1. Outage (DownAfter/DownFor, SetDown): 503 with Retry-After. A real outage
//     answers at the load balancer, before any authentication.
//  2. Infrastructure faults, drawn once per request in arrival order from the
//     seeded generator: Latency (always added), then HangRate (hold the request
//     until the client gives up or MaxHang passes, then 503), Rate429 (429 with
//     Retry-After), FailRate (500). These too happen before authentication.
//  3. Method (405 with Allow: POST).
//  4. Source address allow-list (AllowFrom): 403 access_denied.
//  5. Bearer token: a token in the URL is 400 invalid_request; a missing,
//     unknown, expired or revoked token is 401 with a WWW-Authenticate
//     challenge (RFC 6750) and the RFC 8935 body {"err":"authentication_failed"}.
//  6. Content-Type application/secevent+jwt and Accept admitting
//     application/json (RFC 8935 §2.1: both MUST): 400 invalid_request.
//  7. JWS: compact form, alg in the allow-list, typ exactly secevent+jwt
//     (invalid_request), then the signature against the configured keys
//     (invalid_key when no key matches, the signature does not verify or the
//     RSA key is under 2048 bits). If a JWKS URL has never answered, the
//     receiver says 503: its own failure, not the transmitter's.
//  8. Claims, only once the signature holds: repeated member names, iss
//     (invalid_issuer), aud (invalid_audience), then iat, jti, sub and exp
//     (never allowed), events, the subject (sub_id and in-event subjects,
//     simple and complex, per RFC 9493 and SSF 1.0 §3), txn and toe
//     (invalid_request). Every violation found is counted and described;
//     the err code is that of the first.
//  9. Warnings, once every MUST holds: SHOULD rules (txn, one event per
//     SET, the top-level sub_id in mode either) and the CAEP 1.0, RISC 1.0
//     and SSF 1.0 event catalogue (EventTypes: required members, types,
//     enumerated values). The SET is accepted; each warning is counted in
//     Stats.Warnings and logged once per kind with an example jti. Strict
//     turns them into 400 invalid_request.
//  10. RejectTxnPrefix: a valid SET whose txn starts with the prefix is
//     answered 400 invalid_request, to exercise dead-lettering.
//  11. Duplicates by jti: byte-identical claims are a duplicate and answered
//     202 like the first time (RFC 8935 §2); different claims under a jti
//     already accepted are violation "jti_reuse_mismatch", answered 400
//     invalid_request, because a corrected SET must carry a new jti.
//  12. Accepted: 202. RevokeTokenEvery revokes the current token after every
//     N unique accepted SETs, so the next push gets a 401.
//
// Rules lists every check with the section of the standard that states it;
// each error description starts with the rule's kind and section, so a
// transmitter's operator can look it up. Check runs steps 7 to 12 on one
// SET without HTTP, for offline checking (setrelay receiver --check).
//
// # Independence
//
// The receiver imports nothing of setrelay's transmitter side (set, signer,
// intent): its rules and its event catalogue are its own reading of the
// standards, so that a misreading cannot hide in both. A test compares its
// catalogue with intent's and lists every difference.
//
// # Determinism
//
// /token sees only the outage; the other faults apply to /events. Every
// request to /events draws the same number of values from one PCG
// generator seeded with Seed, under a mutex, so the i-th request to arrive
// always gets the same fault decision. A sequential client therefore sees the
// same faults on every run with the same seed; concurrent clients see the same
// number of each fault over the same number of requests, though which request
// gets which depends on arrival order.
//
// # Memory
//
// The receiver keeps the claims of accepted SETs to detect duplicates and
// for tests (Accepted, Lookup). It keeps at most MaxRecords of them, evicting
// the oldest first; a SET re-sent after its record was evicted is counted as
// a new unique SET.
package receiver
