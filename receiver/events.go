package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// serveEvents is the RFC 8935 push endpoint; the order of its checks is
// documented in the package comment.
func (r *Receiver) serveEvents(w http.ResponseWriter, req *http.Request) {
	r.stats.request()
	rw := &statusWriter{ResponseWriter: w}
	defer func() { r.stats.response(rw.status()) }()
	w = rw

	if r.outage(w) {
		return
	}
	if !r.injectFaults(w, req) {
		return
	}
	if req.Method != http.MethodPost {
		r.count(VMethod)
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed: SETs are delivered with POST (RFC 8935 §2.1)", http.StatusMethodNotAllowed)
		return
	}
	if len(r.cfg.AllowFrom) > 0 && !r.sourceAllowed(req.RemoteAddr) {
		r.fail(w, http.StatusForbidden, finding(VSourceDenied, "source address is not on this receiver's allow-list"))
		return
	}
	if req.URL.Query().Has("access_token") {
		r.fail(w, http.StatusBadRequest, finding(VTokenInURL, "the access token must be sent in the Authorization header, never in the URL"))
		return
	}
	if !r.cfg.NoAuth {
		if kind, desc := r.authenticate(req); kind != "" {
			challenge := `Bearer realm="setrelay-receiver"`
			if kind != VTokenMissing {
				challenge += fmt.Sprintf(`, error="invalid_token", error_description=%q`, desc)
			}
			w.Header().Set("WWW-Authenticate", challenge)
			r.fail(w, http.StatusUnauthorized, finding(kind, desc))
			return
		}
	}
	if mt, _, _ := mime.ParseMediaType(req.Header.Get("Content-Type")); mt != "application/secevent+jwt" {
		r.fail(w, http.StatusBadRequest, finding(VContentType, fmt.Sprintf("Content-Type is %q, want application/secevent+jwt", req.Header.Get("Content-Type"))))
		return
	}
	switch accept := req.Header.Values("Accept"); {
	case len(accept) == 0:
		r.fail(w, http.StatusBadRequest, finding(VAcceptMissing, "no Accept header; send Accept: application/json"))
		return
	case !acceptsJSON(accept):
		r.fail(w, http.StatusBadRequest, finding(VAcceptUnacceptable, fmt.Sprintf("Accept %q excludes application/json, the type of this receiver's error answers", strings.Join(accept, ", "))))
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, r.cfg.MaxBodyBytes+1))
	if err != nil {
		// The client went away mid-body; there is no one to answer.
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if int64(len(body)) > r.cfg.MaxBodyBytes {
		r.fail(w, http.StatusBadRequest, finding(VBodyTooLarge, fmt.Sprintf("body exceeds %d bytes", r.cfg.MaxBodyBytes)))
		return
	}

	v, set := r.check(req.Context(), string(body))
	switch {
	case v.Status == http.StatusServiceUnavailable:
		// Our own key source is down: a temporary failure, not the
		// transmitter's fault, so it is neither a violation nor a 400.
		w.Header().Set("Retry-After", "5")
		http.Error(w, "verification keys unavailable", http.StatusServiceUnavailable)
	case !v.Accepted():
		r.answer(w, v.Status, v.Err, v.Description, kinds(v.Violations), set)
	default:
		r.logAccepted(v, set)
		w.WriteHeader(http.StatusAccepted)
	}
}

// logAccepted writes the log line of an accepted SET.
func (r *Receiver) logAccepted(v Verdict, set *verifiedSET) {
	if r.cfg.Quiet {
		return
	}
	msg := "SET accepted"
	if v.Duplicate {
		msg = "SET duplicate (accepted again)"
	}
	fields := []zap.Field{zap.String("jti", set.jti), zap.Strings("events", set.events), zap.String("iss", set.iss), zap.String("alg", set.alg)}
	if set.txn != "" {
		fields = append(fields, zap.String("txn", set.txn))
	}
	if set.kid != "" {
		fields = append(fields, zap.String("kid", set.kid))
	}
	if len(v.Warnings) > 0 {
		fields = append(fields, zap.Strings("warnings", kinds(v.Warnings)))
	}
	r.log.Info(msg, fields...)
}

// injectFaults applies latency, hang, 429 and 500; it returns false when
// it answered the request.
func (r *Receiver) injectFaults(w http.ResponseWriter, req *http.Request) bool {
	d := r.dice.decide(r.cfg.HangRate, r.cfg.Rate429, r.cfg.FailRate)
	if r.cfg.Latency > 0 || d.hang {
		// net/http notices a client hanging up only once the body has been
		// read, so buffer it first; otherwise a hang would outlive its client.
		body, err := io.ReadAll(io.LimitReader(req.Body, r.cfg.MaxBodyBytes+1))
		if err != nil {
			return false
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if r.cfg.Latency > 0 {
		r.stats.fault(FaultLatency)
		if !r.sleep(req.Context(), w, r.cfg.Latency) {
			return false
		}
	}
	switch {
	case d.hang:
		r.stats.fault(FaultHang)
		// Held until the client gives up; if it does not within MaxHang,
		// answer as a gateway would.
		if r.sleep(req.Context(), w, r.cfg.MaxHang) {
			http.Error(w, "service unavailable (injected hang)", http.StatusServiceUnavailable)
		}
		return false
	case d.tooMany:
		r.stats.fault(Fault429)
		w.Header().Set("Retry-After", strconv.FormatInt(int64(max(1, (r.cfg.RetryAfter+time.Second-1)/time.Second)), 10))
		http.Error(w, "too many requests (injected)", http.StatusTooManyRequests)
		return false
	case d.fail:
		r.stats.fault(Fault500)
		http.Error(w, "internal server error (injected)", http.StatusInternalServerError)
		return false
	}
	return true
}

// sleep waits d and reports whether it passed. It stops early when the
// client goes away (nothing to answer) or the receiver is closed (answered
// 503 here).
func (r *Receiver) sleep(ctx context.Context, w http.ResponseWriter, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-r.closing:
		http.Error(w, "service unavailable (receiver closing)", http.StatusServiceUnavailable)
		return false
	}
}

// authenticate checks the bearer token; it returns the violation kind and
// a description, or "" when the token is good.
func (r *Receiver) authenticate(req *http.Request) (kind, desc string) {
	h := req.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	tok = strings.TrimSpace(tok)
	if h == "" || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return VTokenMissing, "no bearer token: send Authorization: Bearer <access token from the token endpoint>"
	}
	switch kind := r.tokens.check(tok); kind {
	case "":
		return "", ""
	case VTokenExpired:
		return kind, "the access token has expired; fetch a new one"
	case VTokenRevoked:
		return kind, "the access token was revoked; fetch a new one"
	default:
		return VTokenInvalid, "the access token was not issued by this receiver"
	}
}

func (r *Receiver) sourceAllowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	for _, p := range r.cfg.AllowFrom {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// acceptsJSON reports whether Accept header values admit application/json.
func acceptsJSON(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			if mt == "application/json" || mt == "application/*" || mt == "*/*" {
				return true
			}
		}
	}
	return false
}

// count records violations that are answered without an RFC 8935 body.
func (r *Receiver) count(kinds ...string) {
	r.stats.update(func(s *Stats) {
		for _, k := range kinds {
			s.Violations[k]++
		}
	})
}

// fail answers with the first violation's code and every violation's
// description, and counts them all.
func (r *Receiver) fail(w http.ResponseWriter, status int, viols ...violation) {
	descs := make([]string, len(viols))
	kinds := make([]string, len(viols))
	for i, v := range viols {
		descs[i], kinds[i] = v.desc, v.kind
	}
	r.count(kinds...)
	r.answer(w, status, viols[0].code, strings.Join(descs, "; "), kinds, nil)
}

// errorBody is the RFC 8935 §2.3 error response.
type errorBody struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

func (r *Receiver) answer(w http.ResponseWriter, status int, code, desc string, kinds []string, set *verifiedSET) {
	r.stats.update(func(s *Stats) { s.Rejections[code]++ })
	if !r.cfg.Quiet {
		fields := []zap.Field{zap.Int("status", status), zap.String("err", code), zap.String("description", desc)}
		if len(kinds) > 0 {
			fields = append(fields, zap.Strings("violations", kinds))
		}
		if set != nil {
			fields = append(fields, zap.String("jti", set.jti), zap.String("txn", set.txn))
		}
		r.log.Warn("SET rejected", fields...)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Err: code, Description: desc})
}

// statusWriter remembers the status written, for Stats.Responses.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	if err != nil {
		return n, fmt.Errorf("writing response: %w", err)
	}
	return n, nil
}

func (s *statusWriter) status() int {
	if s.code == 0 {
		// Nothing written: the client went away during a hang or latency.
		return 499
	}
	return s.code
}
