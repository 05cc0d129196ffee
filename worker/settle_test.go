package worker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/setrelay/setrelay/push"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/signer"
)

// TestSettleTable covers every row of Settle's table and both overrides.
func TestSettleTable(t *testing.T) {
	pol := RetryPolicy{Initial: time.Second, Max: time.Minute, MaxAttempts: 5, MaxAge: time.Hour}
	hold := 7 * time.Second
	base := func(stage Stage) Facts {
		return Facts{Stage: stage, Attempt: 1, Deliveries: 1, Hold: hold, Retry: pol, Jitter: 0.5}
	}
	res := func(o push.Outcome, reason string) push.Result {
		return push.Result{Outcome: o, Reason: reason, Status: 400}
	}
	with := func(f Facts, mod func(*Facts)) Facts { mod(&f); return f }

	tests := []struct {
		name  string
		f     Facts
		kind  ActionKind
		why   string
		delay time.Duration // checked when non-zero; -1 means must be zero
	}{
		{"panic", base(StagePanic), DeadLetter, ReasonInternal, -1},
		{"unknown stage", base(Stage(200)), DeadLetter, ReasonInternal, -1},
		{"invalid, owner", with(base(StageInvalid), func(f *Facts) { f.Owner = true }), DeadLetter, ReasonInvalidIntent, -1},
		{"invalid, not owner", base(StageInvalid), Skip, ReasonInvalidIntent, -1},
		{"unknown receiver, owner", with(base(StageUnknownReceiver), func(f *Facts) { f.Owner = true }), DeadLetter, ReasonUnknownReceiver, -1},
		{"unknown receiver, not owner", base(StageUnknownReceiver), Skip, ReasonUnknownReceiver, -1},
		{"unwanted", base(StageUnwanted), Skip, "", -1},
		{"invalid replay", base(StageInvalidReplay), DeadLetter, ReasonInvalidReplay, -1},
		{"replay unchecked", base(StageReplayUnchecked), HandBack, reasonReplayUnchecked, replayKeyRetry},
		{"filter unavailable", base(StageFilterUnavailable), HandBack, reasonFilterUnavailable, acceptRetry},
		{"last, filter unavailable", with(base(StageFilterUnavailable), func(f *Facts) { f.Last = true }), DeadLetter, ReasonMaxDeliveries, -1},
		{"subject held", base(StageSubjectHeld), DeadLetter, queue.ReasonSubjectHeld, -1},
		{"hold unchecked", base(StageHoldUnchecked), HandBack, reasonHoldUnchecked, holdRetry},
		{"last, hold unchecked", with(base(StageHoldUnchecked), func(f *Facts) { f.Last = true }), DeadLetter, ReasonMaxDeliveries, -1},
		{"held, paused", with(base(StageHeld), func(f *Facts) { f.State = StatePaused }), HandBack, reasonPaused, hold},
		{"held, blocked", with(base(StageHeld), func(f *Facts) { f.State = StateBlocked }), HandBack, reasonBlocked, hold},
		{"released partition", base(StageReleased), HandBack, reasonReleased, -1},
		{"released partition at shutdown", with(base(StageReleased), func(f *Facts) { f.Shutdown = true }), HandBack, reasonReleased, -1},
		{"build", base(StageBuild), DeadLetter, ReasonBuildFailed, -1},
		{"sign transient", with(base(StageSign), func(f *Facts) { f.SignError = SignTransient }), HandBack, reasonSignTransient, time.Second},
		{"sign key unusable", with(base(StageSign), func(f *Facts) { f.SignError = SignKeyUnusable }), Block, ReasonKeyUnusable, hold},
		{"sign other", base(StageSign), NakDelay, reasonSign, time.Second},
		{"sign other, last attempt", with(base(StageSign), func(f *Facts) { f.Attempt = 5 }), DeadLetter, ReasonAttemptsExhausted, -1},
		{"interrupted", base(StageInterrupted), HandBack, reasonShutdown, -1},
		{"pushed, shutdown, failed", with(base(StagePushed), func(f *Facts) { f.Shutdown = true; f.Result = res(push.Retry, "timeout") }), HandBack, reasonShutdown, -1},
		{"pushed, shutdown, delivered", with(base(StagePushed), func(f *Facts) { f.Shutdown = true; f.Result = res(push.Delivered, "delivered") }), Ack, "delivered", -1},
		{"delivered", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Delivered, "delivered") }), Ack, "delivered", -1},
		{"delivered, old and last", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Delivered, "delivered"); f.Age = 2 * time.Hour; f.Attempt = 9 }), Ack, "delivered", -1},
		{"blocked", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Blocked, push.ReasonTokenConfig) }), Block, push.ReasonTokenConfig, hold},
		{"blocked, attempts over", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Blocked, push.ReasonEndpointNotFound); f.Attempt = 50 }), Block, push.ReasonEndpointNotFound, hold},
		{"forbidden streak", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonForbidden); f.Streak = BlockStreak }), Block, push.ReasonForbidden, hold},
		{"forbidden first attempt", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonForbidden); f.Streak = 1 }), NakDelay, push.ReasonForbidden, time.Second},
		{"forbidden, others delivered", with(base(StagePushed), func(f *Facts) {
			f.Result = res(push.Permanent, push.ReasonForbidden)
			f.Streak, f.Attempt, f.OthersDelivered = 1, 2, true
		}), DeadLetter, push.ReasonForbidden, -1},
		{"http_4xx is not held for a streak", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonHTTP4xx); f.Streak = 1 }), DeadLetter, push.ReasonHTTP4xx, -1},
		{"invalid_key streak", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonInvalidKey); f.Streak = BlockStreak }), Block, push.ReasonInvalidKey, hold},
		{"invalid_issuer first attempt", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonInvalidIssuer); f.Streak = 1 }), NakDelay, push.ReasonInvalidIssuer, time.Second},
		{"invalid_audience second attempt", with(base(StagePushed), func(f *Facts) {
			f.Result = res(push.Permanent, push.ReasonInvalidAudience)
			f.Streak, f.Attempt = 2, 2
		}), NakDelay, push.ReasonInvalidAudience, 2 * time.Second},
		{"invalid_audience, others delivered", with(base(StagePushed), func(f *Facts) {
			f.Result = res(push.Permanent, push.ReasonInvalidAudience)
			f.Streak, f.Attempt, f.OthersDelivered = 1, 2, true
		}), DeadLetter, push.ReasonInvalidAudience, -1},
		{"invalid_audience, third attempt", with(base(StagePushed), func(f *Facts) {
			f.Result = res(push.Permanent, push.ReasonInvalidAudience)
			f.Streak, f.Attempt = 1, 3
		}), DeadLetter, push.ReasonInvalidAudience, -1},
		{"other permanent", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Permanent, push.ReasonInvalidRequest) }), DeadLetter, push.ReasonInvalidRequest, -1},
		{"retry while blocked", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "http_5xx"); f.State = StateBlocked }), HandBack, reasonBlocked, hold},
		{"retry, probe", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "http_5xx"); f.Probe = true; f.Attempt = 5 }), HandBack, "http_5xx", 0},
		{"retry, probe, too old", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "http_5xx"); f.Probe = true; f.Age = 2 * time.Hour }), DeadLetter, ReasonMaxAge, -1},
		{"retry", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "http_5xx") }), NakDelay, "http_5xx", time.Second},
		{"retry, attempts over", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "http_5xx"); f.Attempt = 5 }), DeadLetter, ReasonAttemptsExhausted, -1},
		{"retry, too old", with(base(StagePushed), func(f *Facts) { f.Result = res(push.Retry, "timeout"); f.Age = 2 * time.Hour }), DeadLetter, ReasonMaxAge, -1},
		{"retry-after wins", with(base(StagePushed), func(f *Facts) {
			f.Result = res(push.Retry, "http_429")
			f.Result.RetryAfter = 30 * time.Second
		}), NakDelay, "http_429", 30 * time.Second},

		// Override 1: the last delivery cannot be handed back.
		{"last, held", with(base(StageHeld), func(f *Facts) { f.Last = true; f.State = StatePaused }), DeadLetter, ReasonMaxDeliveries, -1},
		{"last, released", with(base(StageReleased), func(f *Facts) { f.Last = true }), DeadLetter, ReasonMaxDeliveries, -1},
		{"last, retry", with(base(StagePushed), func(f *Facts) { f.Last = true; f.Result = res(push.Retry, "http_5xx") }), DeadLetter, ReasonMaxDeliveries, -1},
		{"last, blocked", with(base(StagePushed), func(f *Facts) { f.Last = true; f.Result = res(push.Blocked, "tls") }), DeadLetter, ReasonMaxDeliveries, -1},
		{"last, interrupted", with(base(StageInterrupted), func(f *Facts) { f.Last = true }), DeadLetter, ReasonMaxDeliveries, -1},
		{"last, delivered", with(base(StagePushed), func(f *Facts) { f.Last = true; f.Result = res(push.Delivered, "delivered") }), Ack, "delivered", -1},

		// Override 2: a dead letter that could not be stored.
		{"store failed", with(base(StageBuild), func(f *Facts) { f.StoreFailures = 1; f.Deliveries = 1 }), NakDelay, reasonDeadLetterStore, deadLetterRetry},
		{"store failed, 3rd delivery", with(base(StageBuild), func(f *Facts) { f.StoreFailures = 1; f.Deliveries = 3 }), NakDelay, reasonDeadLetterStore, 4 * deadLetterRetry},
		{"store failed, shutdown", with(base(StageBuild), func(f *Facts) { f.StoreFailures = 1; f.Shutdown = true }), HandBack, reasonShutdown, -1},
		{"store failed, last", with(base(StageBuild), func(f *Facts) { f.StoreFailures = 1; f.Last = true }), DeadLetter, ReasonBuildFailed, lastDeliveryRetry},
		{"store failed, last, 4th", with(base(StageBuild), func(f *Facts) { f.StoreFailures = 4; f.Last = true }), DeadLetter, ReasonBuildFailed, 8 * lastDeliveryRetry},
		{"store failed, last, capped", with(base(StageBuild), func(f *Facts) { f.StoreFailures = maxLastDeliveryStores - 1; f.Last = true }), DeadLetter, ReasonBuildFailed, deadLetterRetry},
		{"store failed, last, given up", with(base(StageBuild), func(f *Facts) { f.StoreFailures = maxLastDeliveryStores; f.Last = true }), HandBack, ReasonDeadLetterUnstored, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Settle(tt.f)
			if a.Kind != tt.kind || a.Reason != tt.why {
				t.Fatalf("Settle = %v/%q, want %v/%q", a.Kind, a.Reason, tt.kind, tt.why)
			}
			switch {
			case tt.delay < 0 && a.Delay != 0:
				t.Fatalf("delay %v, want none", a.Delay)
			case tt.delay > 0 && a.Delay != tt.delay:
				t.Fatalf("delay %v, want %v", a.Delay, tt.delay)
			}
			if again := Settle(tt.f); again != a {
				t.Fatalf("not pure: %+v then %+v", a, again)
			}
		})
	}
}

// TestSettleStoreFailuresOnLastDeliveryAreBounded: however the dead-letter
// stream fails, the retries in place on the last delivery end, within
// about 30 s of waiting in all, so a worker is never held indefinitely.
func TestSettleStoreFailuresOnLastDeliveryAreBounded(t *testing.T) {
	f := Facts{Stage: StagePushed, Result: push.Result{Outcome: push.Permanent, Reason: "invalid_request"}, Attempt: 1, Last: true}
	var waited time.Duration
	for f.StoreFailures = 0; ; f.StoreFailures++ {
		a := Settle(f)
		if a.Kind != DeadLetter {
			if a.Kind != HandBack || a.Reason != ReasonDeadLetterUnstored {
				t.Fatalf("gave up with %+v", a)
			}
			break
		}
		waited += a.Delay
		if f.StoreFailures > 100 {
			t.Fatal("never gives up")
		}
	}
	if waited > 40*time.Second {
		t.Fatalf("waits %v in place in all", waited)
	}
}

// TestSignErrorsAreClassified: the signer's sentinel errors, wrapped as a
// KMS or HSM key source would wrap them, select the Settle rows.
func TestSignErrorsAreClassified(t *testing.T) {
	e := newEnv(t, 30*time.Second, "s")
	p, err := New(Config{Receivers: []Receiver{e.spec(e.js, "s", "http://127.0.0.1:1/events")}}, Deps{JS: e.js})
	if err != nil {
		t.Fatal(err)
	}
	r := p.rcvs[0]
	for _, tt := range []struct {
		err  error
		want SignError
	}{
		{errors.New("boom"), SignFailed},
		{errorsJoin("kms: throttled", signerTransient()), SignTransient},
		{errorsJoin("kms: key disabled", signerUnusable()), SignKeyUnusable},
	} {
		if got := p.signFailed(r, e.sig, tt.err); got != tt.want {
			t.Errorf("%v: %v, want %v", tt.err, got, tt.want)
		}
	}
}

func signerTransient() error { return signer.ErrTransient }
func signerUnusable() error  { return signer.ErrKeyUnusable }

func errorsJoin(msg string, sentinel error) error { return fmt.Errorf("%s: %w", msg, sentinel) }
