package config

import (
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/set"
)

func TestConversions(t *testing.T) {
	y := strings.Replace(issueExample, "  replicas: 1\n", "  replicas: 1\n  user: relay\n  password: ${NATS_PASSWORD}\n  max_ack_pending: 50\n  ack_wait: 45s\n  duplicate_window: 6h\n", 1)
	y = strings.Replace(y, "    insecure_http: false\n", "    insecure_http: false\n    tls: {ca: ca.pem}\n    max_retry_after: 2m\n    pause: {threshold: -1}\n    events: [risc.account-disabled]\n", 1)
	y = strings.Replace(y, "    events: []               # requested types, URIs or aliases; empty = all\n", "", 1)
	y += "worker:\n  concurrency: 8\n  grace_period: 0s\n  fetch_wait: 2s\n"
	y = strings.Replace(y, "worker:\n  concurrency: 64\n", "", 1)
	lookup := env(map[string]string{"GOVUK_CLIENT_ID": "cid", "GOVUK_CLIENT_SECRET": "csecret", "NATS_PASSWORD": "npw"})
	cfg, err := Parse([]byte(y), "x.yaml", lookup)
	if err != nil {
		t.Fatal(err)
	}

	q := cfg.Queue()
	if q.URL != "" || q.User != "relay" || q.Password != "npw" || q.MaxAckPending != 50 || q.AckWait != 45*time.Second || q.StoreDir != "./data" || q.Listen != "127.0.0.1:4222" || q.Replicas != 1 || q.DuplicateWindow != 6*time.Hour {
		t.Errorf("Queue() = %+v", q)
	}
	if got := cfg.ReceiverNames(); len(got) != 1 || got[0] != "govuk" {
		t.Errorf("ReceiverNames = %v", got)
	}

	r := cfg.Receivers[0]
	p := r.Push()
	if p.Name != "govuk" || p.Endpoint != r.Endpoint || p.Auth.TokenURL != r.Auth.TokenURL || p.Auth.ClientID != "cid" ||
		p.Auth.ClientSecret.Reveal() != "csecret" || p.Auth.AuthStyle != "basic" || len(p.Auth.Scopes) != 1 || p.Auth.Scopes[0] != "messages/write" ||
		p.Timeout != 10*time.Second || p.ConnectTimeout != 5*time.Second || p.MaxRetryAfter != 2*time.Minute || p.TLS.CAFile != "ca.pem" {
		t.Errorf("Push() = %+v", p)
	}

	spec := cfg.WorkerSpec(r)
	want := set.Profile{Receiver: "govuk", Issuer: "https://rp.example.gov.uk/", Audience: []string{"https://inbound.ssf.account.gov.uk/"}, Placement: set.PlacementInEvent}
	if spec.Profile.Receiver != want.Receiver || spec.Profile.Issuer != want.Issuer || spec.Profile.Audience[0] != want.Audience[0] || spec.Profile.AudienceAsArray || spec.Profile.Placement != want.Placement {
		t.Errorf("Profile = %+v", spec.Profile)
	}
	if spec.SendKID || spec.Name != "govuk" || len(spec.Types) != 1 || spec.Types[0] != "https://schemas.openid.net/secevent/risc/event-type/account-disabled" {
		t.Errorf("WorkerSpec = %+v", spec)
	}
	if spec.Retry.Initial != time.Second || spec.Retry.Max != 10*time.Minute || spec.Retry.MaxAttempts != 12 || spec.Retry.MaxAge != 72*time.Hour {
		t.Errorf("Retry = %+v", spec.Retry)
	}
	if spec.Pause.Threshold != -1 || spec.Pause.Initial != DefaultPauseInitial {
		t.Errorf("Pause = %+v", spec.Pause)
	}

	// Left out of the file, the window is the default rather than zero
	// (which queue.Provision would silently turn into its own default).
	noWindow, err := Parse([]byte(issueExample), "x.yaml", lookup)
	if err != nil {
		t.Fatal(err)
	}
	if got := noWindow.Queue().DuplicateWindow; got != DefaultDuplicateWindow {
		t.Errorf("default duplicate window = %s, want %s", got, DefaultDuplicateWindow)
	}
	if got := noWindow.Pool().FetchWait; got != DefaultFetchWait {
		t.Errorf("default fetch wait = %s, want %s", got, DefaultFetchWait)
	}

	pool := cfg.Pool()
	if pool.Concurrency != 8 || pool.GracePeriod >= 0 || pool.AckWait != 45*time.Second || pool.FetchWait != 2*time.Second {
		t.Errorf("Pool() = %+v; an explicit grace_period: 0s must reach the worker as 'none' (negative)", pool)
	}
}
