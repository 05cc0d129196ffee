package worker

import (
	"errors"
	"testing"

	"github.com/setrelay/setrelay/push"
)

// TestDescribe: a dead letter's description carries what the receiver said,
// else the transport error, and always the Location of a redirect, which
// would otherwise be lost (DeadLetter has no Location field).
func TestDescribe(t *testing.T) {
	cases := []struct {
		name string
		res  push.Result
		want string
	}{
		{"receiver description", push.Result{Description: "bad aud", Cause: errors.New("ignored")}, "bad aud"},
		{"transport error", push.Result{Cause: errors.New("dial tcp: connection refused")}, "dial tcp: connection refused"},
		{"nothing", push.Result{}, ""},
		{"redirect", push.Result{Reason: push.ReasonRedirect, Status: 302, Location: "https://elsewhere.example/events"},
			"redirected to https://elsewhere.example/events (not followed)"},
		{"redirect with description", push.Result{Reason: push.ReasonRedirect, Status: 307, Location: "/v2/events", Description: "moved"},
			"moved; redirected to /v2/events (not followed)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := describe(&c.res); got != c.want {
				t.Errorf("describe = %q, want %q", got, c.want)
			}
		})
	}
}
