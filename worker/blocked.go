package worker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// A blocked receiver is one the relay is misconfigured for: credentials the
// token endpoint rejects, an endpoint URL that does not exist, a key the
// receiver does not know. Pushing more of its backlog can only fail the
// same way, and dead-lettering it would lose its place (and, on replay, its
// jti). So:
//
//   - its consumer is paused on the server, so no process delivers to it;
//   - the fleet learns of it through the KV bucket StateBucket (key
//     "<receiver>.state"), so every process stops at once and hands back
//     what it holds without counting attempts;
//   - one error line says what failed and what to fix;
//   - one process at a time (a lease in the same bucket) probes it, with
//     a backoff from Pause.ProbeInterval doubling up to Pause.Max: it
//     re-reads the receiver's secret and key files (Receiver.Reload),
//     resumes the consumer, and pushes one real intent. Delivered (or any
//     answer that is not a configuration failure) unblocks the receiver for
//     every process; another configuration failure pauses it again;
//   - `setrelay receivers unblock NAME` (RequestProbe) writes
//     "<receiver>.unblock", and the lease holder probes at once.

// StateBucket is the JetStream KV bucket that shares receiver states and
// probe leases between the processes of a fleet.
const StateBucket = "SETRELAY_RECEIVERS"

// blockedPause is how long a blocked receiver's consumer is paused on the
// server. Probes resume it early; the pause only has to outlast them, and
// expires by itself should every process go away.
const blockedPause = 24 * time.Hour

// stateRecord is the value of "<receiver>.state".
type stateRecord struct {
	State  string    `json:"state"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	Fix    string    `json:"fix,omitempty"`
	// Until is the end of an outage pause.
	Until time.Time `json:"until,omitzero"`
}

// Hints name what an operator edits to fix a blocked receiver, for its
// error line.
type Hints struct {
	// Path is the receiver's place in the configuration, like
	// `receivers[2] ("gov")`.
	Path string
	// SecretFile is its client_secret_file or authorization_header_file.
	SecretFile string
	// KeyFile is its signing key's file.
	KeyFile string
}

// fix says what to change for a blocked receiver, by reason.
func (h Hints) fix(reason string) string {
	path := h.Path
	if path == "" {
		path = "the receiver's configuration"
	}
	reread := ""
	if h.SecretFile != "" {
		reread = "; " + h.SecretFile + " is re-read before each probe, so fixing it unblocks the receiver without a restart"
	}
	switch reason {
	case push.ReasonTokenConfig:
		return "the token endpoint rejects this relay's client, or its answer cannot be used (the error says which): check " + path + ".auth (client_id, client_secret or client_secret_file, scopes, auth_style, token_url) and, for a certificate error, .tls.ca" + reread
	case push.ReasonAuthenticationFailed:
		return "the receiver refuses the credentials even fresh: check " + path + ".auth (the client it expects, authorization_header)" + reread
	case push.ReasonEndpointNotFound, push.ReasonRedirect:
		return "the push endpoint does not exist there, or does not take application/secevent+jwt: check " + path + ".endpoint (a redirect's target is in the log line)"
	case push.ReasonInsufficientScope:
		return "the receiver says the access token lacks a scope it needs (the scope it names is in the description): check " + path + ".auth.scopes and that the receiver granted them to the client, or ask for an authorization_header with that scope" + reread
	case push.ReasonForbidden:
		return "the receiver answers 403 to every SET: give its operator this relay's sending IP address for their allow-list, or check " + path + ".auth (the client, scopes or authorization_header it expects)" + reread
	case push.ReasonTLS:
		return "the endpoint's certificate is for another name or from an untrusted CA: check " + path + ".endpoint and .tls.ca"
	case push.ReasonInvalidKey:
		return "the receiver does not know the signing key: give it this relay's JWKS (GET /jwks.json) or check " + path + ".key and the key file " + h.KeyFile
	case push.ReasonInvalidIssuer:
		return "the receiver of " + path + " expects another iss: check the top-level issuer setting, or the issuer registered with the receiver"
	case push.ReasonInvalidAudience:
		return "the receiver expects another aud: check " + path + ".audience"
	case ReasonKeyUnusable:
		return "the signing key is disabled, deleted or denied to this relay: check " + path + ".key and keys[] (file " + h.KeyFile + ", or the KMS/HSM key and its permissions)"
	}
	return "check " + path
}

// tools are the receiver's signer and pusher, replaced together when a
// probe re-reads the receiver's files.
type tools struct {
	sg Signer
	ps Pusher
}

// tools returns the current signer and pusher.
func (r *rcv) tools() (Signer, Pusher) {
	t := r.cur.Load()
	return t.sg, t.ps
}

// state is the receiver's state for metrics and for Settle.
func (r *rcv) state(now time.Time) State {
	switch {
	case r.blocked.Load():
		return StateBlocked
	case now.Before(r.pausedUntil()):
		return StatePaused
	case r.troubled.Load():
		return StateFailing
	}
	return StateOK
}

// signFailed classifies a signing error (the signer counts it, in
// setrelay_sign_errors_total) and logs it, once a minute per receiver and
// class.
func (p *Pool) signFailed(r *rcv, sg Signer, err error) SignError {
	kind, reason := SignFailed, "failed"
	switch {
	case errors.Is(err, signer.ErrTransient):
		kind, reason = SignTransient, "transient"
	case errors.Is(err, signer.ErrKeyUnusable):
		kind, reason = SignKeyUnusable, "key_unusable"
	}
	if p.failingLog.allow("sign\x00"+r.Name+"\x00"+reason, p.now()) {
		key := ""
		if k, ok := sg.(interface{ KeyID() string }); ok {
			key = k.KeyID()
		}
		p.log.Warn("signing failed; the intent is kept (logged once a minute per reason)",
			zap.String("receiver", r.Name), zap.String("key", key), zap.String("reason", reason), zap.Error(err))
	}
	return kind
}

// block makes r blocked for every process: the consumer is paused on the
// server, the state is shared in the KV bucket, and one error line says
// what to fix. A receiver already blocked for the same reason is left
// alone, so a burst of in-flight failures logs once.
func (p *Pool) block(ctx context.Context, r *rcv, reason string, res *push.Result) {
	now := p.now()
	r.mu.Lock()
	if r.blocked.Load() && r.blockReason == reason {
		r.mu.Unlock()
		return
	}
	first := !r.blocked.Load()
	r.blockReason = reason
	if first {
		r.blockedAt = now
		r.probeBackoff = r.Pause.ProbeInterval
		r.probeAt = now.Add(r.probeBackoff)
	}
	r.blocked.Store(true)
	r.mu.Unlock()
	p.publishState(r)
	fix := r.Hints.fix(reason)

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := p.js.PauseConsumer(pctx, r.stream, r.consumer, now.Add(blockedPause)); err != nil {
		p.log.Warn("pausing the blocked receiver's consumer failed; this process holds back, the others learn of it from the state bucket or their own failures",
			zap.String("receiver", r.Name), zap.Error(err))
	}
	p.putState(pctx, r, stateRecord{State: StateBlocked.String(), Reason: reason, Since: now, Fix: fix})
	p.log.Error("receiver blocked: configuration failure; its backlog is kept and nothing is dead-lettered until it is fixed",
		zap.String("receiver", r.Name),
		zap.String("reason", reason),
		zap.Int("status", res.Status),
		zap.String("err", res.Err),
		zap.String("description", describe(res)),
		zap.String("fix", fix),
		zap.String("unblock", "fixed? `setrelay receivers unblock "+r.Name+"` probes at once"))
	if first && r.Observer != nil {
		r.Observer.Blocked(pctx, r.Name, reason)
	}
	r.wakeProbe()
}

// adoptBlocked takes over a block another process recorded.
func (p *Pool) adoptBlocked(r *rcv, rec stateRecord) {
	r.mu.Lock()
	if r.blocked.Load() {
		r.mu.Unlock()
		return
	}
	r.blockReason, r.blockedAt = rec.Reason, rec.Since
	r.probeBackoff = r.Pause.ProbeInterval
	// A process that starts on a blocked receiver may carry the fix (a
	// restart with a corrected file): probe at once.
	r.probeAt = p.now()
	r.blocked.Store(true)
	r.mu.Unlock()
	p.publishState(r)
	p.log.Info("receiver is blocked (recorded by another process); holding back", zap.String("receiver", r.Name),
		zap.String("reason", rec.Reason), zap.String("fix", rec.Fix))
	r.wakeProbe()
}

// unblock clears r's block in this process, and, when this process probed
// it (shared), in the state bucket and on the server.
func (p *Pool) unblock(ctx context.Context, r *rcv, shared bool) {
	r.mu.Lock()
	if !r.blocked.Load() {
		r.mu.Unlock()
		return
	}
	since, reason := r.blockedAt, r.blockReason
	r.blocked.Store(false)
	r.blockReason = ""
	r.pauseUntil.Store(0)
	r.mu.Unlock()
	r.fails.Store(0)
	r.streak.reset()
	r.rampFrom.Store(p.now().UnixNano())
	p.publishState(r)
	if shared {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := p.js.ResumeConsumer(pctx, r.stream, r.consumer); err != nil {
			p.log.Warn("resuming the unblocked receiver's consumer failed", zap.String("receiver", r.Name), zap.Error(err))
		}
		p.putState(pctx, r, stateRecord{State: StateOK.String(), Since: p.now()})
		if r.Observer != nil {
			r.Observer.Unblocked(pctx, r.Name)
		}
	}
	p.log.Info("receiver unblocked", zap.String("receiver", r.Name), zap.String("was", reason),
		zap.Duration("blocked_for", p.now().Sub(since)))
}

func (r *rcv) wakeProbe() {
	select {
	case r.probeNow <- struct{}{}:
	default:
	}
}

// probeLoop probes r while it is blocked (with a backoff) or paused for an
// outage (every Pause.ProbeInterval, whatever the pause's length), one
// process of the fleet at a time. work is the pool's work context, for the
// probe's message.
func (p *Pool) probeLoop(ctx, work context.Context, r *rcv) {
	idle := time.NewTicker(heldPoll * 5)
	defer idle.Stop()
	for ctx.Err() == nil {
		blocked := r.blocked.Load()
		if !blocked && !p.now().Before(r.pausedUntil()) {
			select {
			case <-ctx.Done():
				return
			case <-r.probeNow:
			case <-idle.C:
			}
			continue
		}
		r.mu.Lock()
		wait := r.probeAt.Sub(p.now())
		r.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-r.probeNow:
				// An operator's request: probe now. Anything else (a new
				// block or pause) set probeAt itself, so look again.
				if !r.forced() {
					t.Stop()
					continue
				}
			case <-t.C:
			}
			t.Stop()
		}
		switch {
		case r.blocked.Load():
			p.probeBlocked(ctx, work, r)
		case p.now().Before(r.pausedUntil()):
			p.probePaused(ctx, work, r)
		}
	}
}

// probePaused runs one probe of a receiver paused for an outage, if this
// process holds the fleet's probe lease for this interval: resume the
// consumer, push one real intent, and either declare the receiver back
// (for every process, at once) or pause the consumer again until the
// current pause's end. A failed probe's intent is handed back without
// counting an attempt.
func (p *Pool) probePaused(ctx, work context.Context, r *rcv) {
	now := p.now()
	r.mu.Lock()
	r.probeAt = now.Add(r.Pause.ProbeInterval)
	r.mu.Unlock()
	if !p.lease(ctx, r, now.Add(r.Pause.ProbeInterval)) {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := p.js.ResumeConsumer(pctx, r.stream, r.consumer)
	cancel()
	if err != nil {
		r.m.probe("error")
		p.log.Warn("paused receiver: resuming its consumer for a probe failed", zap.String("receiver", r.Name), zap.Error(err))
		return
	}
	kind, got := p.probeOne(ctx, work, r)
	switch {
	case kind == Ack:
		r.m.probe("ok")
		p.recovered(ctx, r, true)
		return
	case kind == Block:
		r.m.probe("blocked")
		return // block paused the consumer again
	case !got:
		r.m.probe("empty")
	default:
		r.m.probe("failed")
	}
	// Still down, or nothing to tell by: hold the pause where it was.
	if until := r.pausedUntil(); p.now().Before(until) {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := p.js.PauseConsumer(pctx, r.stream, r.consumer, until); err != nil {
			p.log.Warn("pausing the receiver's consumer again after a probe failed", zap.String("receiver", r.Name), zap.Error(err))
		}
		cancel()
	}
}

// recovered ends an outage pause in this process and, when this process
// found out (shared), for the fleet: the consumer is resumed and the state
// bucket says ok, which every process follows at once. Concurrency then
// ramps up from Pause.RampStart.
func (p *Pool) recovered(ctx context.Context, r *rcv, shared bool) {
	now := p.now()
	r.mu.Lock()
	wasPaused := now.Before(r.pausedUntil()) || r.down.Load()
	since := r.downSince
	r.pauseUntil.Store(0)
	r.pausedAt = time.Time{}
	r.cooldown = r.Pause.Initial
	r.downSince = time.Time{}
	r.mu.Unlock()
	r.down.Store(false)
	// The receiver is back for the fleet: a process that adopted the pause
	// (troubled without failing itself) or failed before it must not stay
	// "failing" until its own next delivery, which an idle one may not make.
	r.troubled.Store(false)
	r.m.paused.Set(0)
	r.win.reset()
	if wasPaused {
		r.rampFrom.Store(now.UnixNano())
	}
	p.publishState(r)
	if shared {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := p.js.ResumeConsumer(pctx, r.stream, r.consumer); err != nil {
			p.log.Warn("resuming the recovered receiver's consumer failed", zap.String("receiver", r.Name), zap.Error(err))
		}
		p.putState(pctx, r, stateRecord{State: StateOK.String(), Since: now})
	}
	if wasPaused {
		f := []zap.Field{zap.String("receiver", r.Name)}
		if !since.IsZero() {
			f = append(f, zap.Duration("down_for", now.Sub(since).Round(time.Millisecond)))
		}
		p.log.Warn("receiver back: consumer resumed", f...)
	}
}

// adoptPaused takes over an outage pause another process recorded.
//
// The receiver is then down for this process too, and troubled: the first
// delivery after the pause (a probe's, or a push once the pause has run
// out) must end the outage for the fleet, as it would in the process that
// paused. Without troubled that delivery was not news, so a process that
// adopted the pause (a restart during an outage, or a replica whose peer
// that paused has gone) kept probing one message at a time, reported the
// consumer paused, and left the shared record "paused" for good.
//
// A recorded pause that has already run out (a process starting after the
// pause, with none of the fleet having delivered since) is adopted the
// same way, without a pause: the receiver is tried one message at a time
// until one gets through, which records it ok.
func (p *Pool) adoptPaused(r *rcv, rec stateRecord) {
	now := p.now()
	r.mu.Lock()
	if rec.Until.After(r.pausedUntil()) && rec.Until.After(now) {
		r.pauseUntil.Store(rec.Until.UnixNano())
	}
	if r.downSince.IsZero() {
		r.downSince = rec.Since
	}
	r.probeAt = now.Add(r.Pause.ProbeInterval)
	r.mu.Unlock()
	r.troubled.Store(true)
	r.down.Store(true)
	if rec.Until.After(now) {
		r.m.paused.Set(1)
	}
	p.publishState(r)
	r.wakeProbe()
}

// forced reports (and clears) an operator's unblock request.
func (r *rcv) forced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.force
	r.force = false
	if f {
		r.probeBackoff = r.Pause.ProbeInterval
	}
	return f
}

// probeBlocked runs one probe of a blocked receiver, if this process holds
// the fleet's probe lease.
func (p *Pool) probeBlocked(ctx, work context.Context, r *rcv) {
	now := p.now()
	r.mu.Lock()
	backoff := r.probeBackoff
	r.probeAt = now.Add(backoff)
	r.probeBackoff = min(2*backoff, r.Pause.Max)
	r.mu.Unlock()
	if !p.lease(ctx, r, now.Add(backoff)) {
		return
	}
	if r.Reload != nil {
		sg, ps, err := r.Reload(ctx)
		if err != nil {
			r.m.probe("reload_failed")
			p.log.Warn("blocked receiver: re-reading its configuration failed; it stays blocked", zap.String("receiver", r.Name), zap.Error(err))
			return
		}
		r.cur.Store(&tools{sg: sg, ps: ps})
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := p.js.ResumeConsumer(pctx, r.stream, r.consumer)
	cancel()
	if err != nil {
		r.m.probe("error")
		p.log.Warn("blocked receiver: resuming its consumer for a probe failed", zap.String("receiver", r.Name), zap.Error(err))
		return
	}
	kind, got := p.probeOne(ctx, work, r)
	switch {
	case kind == Block:
		r.m.probe("blocked")
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if _, err := p.js.PauseConsumer(pctx, r.stream, r.consumer, p.now().Add(blockedPause)); err != nil {
			p.log.Warn("pausing the blocked receiver's consumer again failed", zap.String("receiver", r.Name), zap.Error(err))
		}
		cancel()
	case ctx.Err() != nil:
		// Shutdown: leave the record as it is for the next process.
	default:
		// Delivered, or a failure that is not a configuration failure
		// (the outage rules take it from here), or nothing to send: the
		// configuration is no longer known to be wrong.
		if got {
			r.m.probe("ok")
		} else {
			r.m.probe("empty")
		}
		p.unblock(ctx, r, true)
	}
}

// probeOne fetches at most one message and handles it as a probe. An
// ordered receiver's probe pushes an intent one of this process's
// partitions may start now (ordered.go), so the probe keeps the subject's
// order too; without one, it tries the receiver consumer (intents without
// a slot).
func (p *Pool) probeOne(ctx, work context.Context, r *rcv) (ActionKind, bool) {
	if !p.acquire(ctx) {
		return 0, false
	}
	defer p.release(1)
	if len(r.parts) > 0 {
		if t, ok := p.probePartitioned(ctx, r); ok {
			out := p.handle(work, r, t.msg, true, newBeat())
			t.done <- settledMsg{seq: t.seq, out: out}
			return out.kind, true
		}
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.FetchWait)
	defer cancel()
	batch, err := r.Consumer.Fetch(1, jetstream.FetchContext(fctx))
	r.m.pulls.Inc()
	if err != nil {
		return 0, false
	}
	var kind ActionKind
	got := false
	for msg := range batch.Messages() {
		got = true
		kind = p.handle(work, r, msg, true, newBeat()).kind
	}
	return kind, got
}

// fleet is the shared state bucket, or nil when it is unavailable (the
// process then blocks on its own, and the paused consumer stops the rest).
type fleet struct {
	kv jetstream.KeyValue
	id string
}

func stateKey(r *rcv) string      { return queue.Token(r.Name) + ".state" }
func leaseKey(r *rcv) string      { return queue.Token(r.Name) + ".probe" }
func probeKey(name string) string { return queue.Token(name) + ".unblock" }

// openFleet binds the state bucket, creating it when it does not exist.
// Binding comes first: processes started together on a cluster that all
// create-or-update the same bucket queue stream updates behind one
// another, and each waited out its whole timeout before it pulled.
func (p *Pool) openFleet(ctx context.Context) {
	kv, err := p.js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		replicas := 1
		if s, serr := p.js.Stream(ctx, queue.IntentStream); serr == nil && s.CachedInfo() != nil && s.CachedInfo().Config.Replicas > 0 {
			replicas = s.CachedInfo().Config.Replicas
		}
		kv, err = p.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      StateBucket,
			Description: "setrelay receiver states and probe leases, shared by every process",
			History:     1,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			// Another process created it meanwhile.
			kv, err = p.js.KeyValue(ctx, StateBucket)
		}
	}
	if err != nil {
		p.log.Warn("receiver state bucket unavailable; blocks are not shared beyond the paused consumer", zap.String("bucket", StateBucket), zap.Error(err))
		return
	}
	p.fleet = &fleet{kv: kv, id: p.procID}
}

func (p *Pool) putState(ctx context.Context, r *rcv, rec stateRecord) {
	if p.fleet == nil {
		return
	}
	data, _ := json.Marshal(rec)
	if _, err := p.fleet.kv.Put(ctx, stateKey(r), data); err != nil {
		p.log.Warn("recording the receiver's state failed", zap.String("receiver", r.Name), zap.Error(err))
	}
}

// lease takes the fleet's probe lease for r until the given time, and
// reports whether this process holds it. Without a state bucket every
// process probes for itself.
func (p *Pool) lease(ctx context.Context, r *rcv, until time.Time) bool {
	if p.fleet == nil {
		return true
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	val := []byte(p.fleet.id + " " + until.UTC().Format(time.RFC3339Nano))
	e, err := p.fleet.kv.Get(lctx, leaseKey(r))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = p.fleet.kv.Create(lctx, leaseKey(r), val)
		return err == nil
	}
	if err != nil {
		return false
	}
	holder, exp, _ := strings.Cut(string(e.Value()), " ")
	t, perr := time.Parse(time.RFC3339Nano, exp)
	if holder != p.fleet.id && perr == nil && p.now().Before(t) {
		return false
	}
	_, err = p.fleet.kv.Update(lctx, leaseKey(r), val, e.Revision())
	return err == nil
}

// watchFleet follows the state bucket: blocks and unblocks recorded by
// other processes, and operators' unblock requests. It returns when ctx is
// done.
func (p *Pool) watchFleet(ctx context.Context) {
	if p.fleet == nil {
		return
	}
	w, err := p.fleet.kv.WatchAll(ctx)
	if err != nil {
		p.log.Warn("watching the receiver state bucket failed", zap.Error(err))
		return
	}
	defer func() { _ = w.Stop() }()
	byToken := make(map[string]*rcv, len(p.rcvs))
	for _, r := range p.rcvs {
		byToken[queue.Token(r.Name)] = r
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			tok, kind, _ := strings.Cut(e.Key(), ".")
			r := byToken[tok]
			if r == nil {
				continue
			}
			switch kind {
			case "state":
				var rec stateRecord
				if json.Unmarshal(e.Value(), &rec) != nil {
					continue
				}
				switch rec.State {
				case StateBlocked.String():
					p.adoptBlocked(r, rec)
				case StatePaused.String():
					p.adoptPaused(r, rec)
				default:
					p.unblock(ctx, r, false)
					p.recovered(ctx, r, false)
				}
			case "unblock":
				r.mu.Lock()
				r.force = true
				r.probeAt = p.now()
				r.mu.Unlock()
				r.wakeProbe()
			}
		}
	}
}

// RequestProbe asks every process serving receiver to probe it now, if it
// is blocked: what `setrelay receivers unblock` does. It writes the
// request into the state bucket, where the processes watch for it, and
// fails when no relay has created the bucket yet.
func RequestProbe(ctx context.Context, js jetstream.JetStream, receiver string) error {
	kv, err := js.KeyValue(ctx, StateBucket)
	if err != nil {
		return errors.New("worker: no receiver state bucket (" + StateBucket + "): has a relay run against this NATS? " + err.Error())
	}
	_, err = kv.Put(ctx, probeKey(receiver), []byte(time.Now().UTC().Format(time.RFC3339Nano)))
	return err
}

// ReceiverState is one receiver's shared state, for status commands.
type ReceiverState struct {
	Receiver, State, Reason, Fix string
	Since                        time.Time
	// Until is the end of an outage pause (probes may end it sooner).
	Until time.Time
}

// SharedState reads a receiver's state from the state bucket; "ok" when
// nothing is recorded.
func SharedState(ctx context.Context, js jetstream.JetStream, receiver string) (ReceiverState, error) {
	st := ReceiverState{Receiver: receiver, State: StateOK.String()}
	kv, err := js.KeyValue(ctx, StateBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	e, err := kv.Get(ctx, queue.Token(receiver)+".state")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	var rec stateRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return st, err
	}
	st.State, st.Reason, st.Fix, st.Since, st.Until = rec.State, rec.Reason, rec.Fix, rec.Since, rec.Until
	if st.State == StatePaused.String() && !st.Until.After(time.Now()) {
		// The pause ran out without a probe getting through; the
		// relays are trying the receiver again.
		st.State = StateFailing.String()
	}
	return st, nil
}

// streak counts consecutive receiver-wide rejections (invalid_key,
// invalid_issuer, invalid_audience, forbidden) of different intents: the same intent
// rejected again does not lengthen it.
type streak struct {
	// on is set while a streak runs, so that deliveries reset it without
	// taking the mutex.
	on     atomic.Bool
	mu     sync.Mutex
	reason string
	seqs   [BlockStreak]uint64 // the distinct intents seen, up to BlockStreak
	n      int
}

// note records a receiver-wide rejection of message seq and returns the
// number of distinct intents in the streak (at most BlockStreak).
func (s *streak) note(seq uint64, reason string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason != s.reason {
		s.reason, s.n = reason, 0
	}
	if s.n < BlockStreak && !slices.Contains(s.seqs[:s.n], seq) {
		s.seqs[s.n] = seq
		s.n++
	}
	s.on.Store(true)
	return s.n
}

func (s *streak) reset() {
	if !s.on.Load() {
		return
	}
	s.mu.Lock()
	s.reason, s.n = "", 0
	s.on.Store(false)
	s.mu.Unlock()
}

// rateLimit allows one event per key per interval.
type rateLimit struct {
	mu    sync.Mutex
	every time.Duration
	last  map[string]time.Time
}

func (l *rateLimit) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[string]time.Time)
	}
	if t, ok := l.last[key]; ok && now.Sub(t) < l.every {
		return false
	}
	if len(l.last) > 1024 {
		clear(l.last)
	}
	l.last[key] = now
	return true
}

// publishState sets setrelay_receiver_state to r's current state and
// reason, replacing the series of the previous one. It only touches the
// gauge when either changed.
func (p *Pool) publishState(r *rcv) {
	st := r.state(p.now())
	r.mu.Lock()
	reason := ""
	switch st {
	case StateBlocked:
		reason = r.blockReason
	case StatePaused, StateFailing:
		reason = r.lastReason
	}
	r.mu.Unlock()
	r.published.Lock()
	defer r.published.Unlock()
	if r.published.set && r.published.state == st && r.published.reason == reason {
		return
	}
	p.m.state.DeletePartialMatch(map[string]string{"receiver": r.Name})
	p.m.state.WithLabelValues(r.Name, st.String(), reason).Set(1)
	r.published.state, r.published.reason, r.published.set = st, reason, true
}
