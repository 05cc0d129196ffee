package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
)

// TestExtraEventsFollowReceiverFilter: an intent of a type every receiver
// asked for carries three extra events: GOV.UK's eventMetadata (a
// companion type), a CAEP type and a private type. Each receiver's SET
// carries only the extra events it accepts; the rest are left out, logged
// and counted, and the main event is still delivered.
func TestExtraEventsFollowReceiverFilter(t *testing.T) {
	const (
		metadata = intent.GOVUKPrefix + "eventMetadata"
		private  = "https://events.example.com/secevent/user-moved"
	)
	e := newEnv(t, 30*time.Second, "strict", "all", "private")
	recv := map[string]*devReceiver{}
	var specs []Receiver
	for _, name := range []string{"strict", "all", "private"} {
		recv[name] = e.devReceiver(name)
		s := e.spec(e.js, name, recv[name].endpoint())
		switch name {
		case "strict":
			s.Types = []string{"caep.session-revoked"}
		case "private":
			s.AllowPrivateTypes = true
		}
		specs = append(specs, s)
	}
	reg := prometheus.NewRegistry()
	opts := intent.Options{AllowPrivateTypes: true}
	e.run(Config{Concurrency: 2, Intent: opts, Receivers: specs}, e.js, reg)

	in := sessionRevoked("extras-1")
	in.ExtraEvents = map[string]map[string]any{
		metadata: {"source": "test"},
		typeCred: {"credential_type": "password", "change_type": "update"},
		private:  {"to": "elsewhere"},
	}
	if _, err := queue.NewPublisher(e.js, opts).Publish(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "every receiver got one SET", func() bool {
		return len(recv["strict"].bodies()) == 1 && len(recv["all"].bodies()) == 1 && len(recv["private"].bodies()) == 1
	})
	for name, want := range map[string][]string{
		"strict":  {typeRevoked, metadata},
		"all":     {typeRevoked, metadata, typeCred},
		"private": {typeRevoked, metadata, typeCred, private},
	} {
		got := eventTypes(verifiedClaims(t, e.key, recv[name].bodies()[0]))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: SET events %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]float64{"strict": 2, "all": 1, "private": 0} {
		if got := metricValue(t, reg, "setrelay_extra_events_omitted_total", name); got != want {
			t.Errorf("%s: %v extra events counted as omitted, want %v", name, got, want)
		}
	}
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, want none: %+v", len(dls), dls[0].DeadLetter)
	}
}
