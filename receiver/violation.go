package receiver

// RFC 8935 §2.4 error codes, sent as "err" in a 400 (or 401/403) body.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidKey           = "invalid_key"
	ErrInvalidIssuer        = "invalid_issuer"
	ErrInvalidAudience      = "invalid_audience"
	ErrAuthenticationFailed = "authentication_failed"
	ErrAccessDenied         = "access_denied"
)

// Violation kinds, the keys of Stats.Violations. Each names one way a
// transmitter got the protocol wrong; the comment says how it is answered,
// and Rules says where the standards state it.
const (
	VMethod             = "method_not_allowed"  // 405
	VSourceDenied       = "source_denied"       // 403 access_denied
	VTokenInURL         = "token_in_url"        // 400 invalid_request: RFC 8935 §5.3 forbids it
	VTokenMissing       = "token_missing"       // 401 authentication_failed
	VTokenInvalid       = "token_invalid"       // 401: not a token this receiver issued
	VTokenExpired       = "token_expired"       // 401
	VTokenRevoked       = "token_revoked"       // 401
	VContentType        = "content_type"        // 400 invalid_request
	VAcceptMissing      = "accept_missing"      // 400 invalid_request: RFC 8935 §2.1 says MUST
	VAcceptUnacceptable = "accept_unacceptable" // 400 invalid_request: Accept excludes application/json
	VBodyTooLarge       = "body_too_large"      // 400 invalid_request
	VJWSMalformed       = "jws_malformed"       // 400 invalid_request
	VAlgNotAllowed      = "alg_not_allowed"     // 400 invalid_request
	VTyp                = "typ"                 // 400 invalid_request: typ must be exactly secevent+jwt
	VKIDUnknown         = "kid_unknown"         // 400 invalid_key
	VSignature          = "signature_invalid"   // 400 invalid_key
	VKeyTooSmall        = "key_too_small"       // 400 invalid_key: RSA under 2048 bits
	VClaimsMalformed    = "claims_malformed"    // 400 invalid_request
	VISSMissing         = "iss_missing"         // 400 invalid_issuer
	VISSMismatch        = "iss_mismatch"        // 400 invalid_issuer
	VAudMissing         = "aud_missing"         // 400 invalid_audience
	VAudMismatch        = "aud_mismatch"        // 400 invalid_audience
	VIATMissing         = "iat_missing"         // 400 invalid_request
	VIATNotInteger      = "iat_not_integer"     // 400 invalid_request
	VIATMillis          = "iat_millis"          // 400 invalid_request: a known bug in the wild
	VIATFuture          = "iat_future"          // 400 invalid_request
	VJTIMissing         = "jti_missing"         // 400 invalid_request
	VEventsMissing      = "events_missing"      // 400 invalid_request
	VEventsInvalid      = "events_invalid"      // 400 invalid_request: not an object, or empty
	VEventNotObject     = "event_not_object"    // 400 invalid_request
	VSubIDMissing       = "sub_id_missing"      // 400 invalid_request (mode sub_id)
	VSubIDInvalid       = "sub_id_invalid"      // 400 invalid_request
	VSubjectMissing     = "subject_missing"     // 400 invalid_request (in_event mode, or neither placement)
	VSubjectInvalid     = "subject_invalid"     // 400 invalid_request
	VSubPresent         = "sub_present"         // 400 invalid_request
	VExpPresent         = "exp_present"         // 400 invalid_request
	VTxnInvalid         = "txn_invalid"         // 400 invalid_request
	VToeInvalid         = "toe_invalid"         // 400 invalid_request
	VJTIReuseMismatch   = "jti_reuse_mismatch"  // 400 invalid_request: same jti, different claims
)

// violation is one problem found in a request, with the RFC 8935 code it is
// answered with. fatal is false for warnings (Severity Warn).
type violation struct {
	kind  string
	code  string
	desc  string
	fatal bool
}
