package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/setrelay/setrelay/secret"
)

// closedAddr returns a loopback address nothing listens on: connecting to
// it fails at once with "connection refused".
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestTransportErrorsHideURLQueryValues: net/http names the request URL in
// every transport error, and that error reaches the DeliveryError, the dead
// letter built from it and the logs. Some receivers insist on parameters in
// their token or push URL (a tenant key, an API key); none of their values
// may be printed, while the host stays visible for the operator.
func TestTransportErrorsHideURLQueryValues(t *testing.T) {
	const value = "Q-VALUE-7f3a9c"
	addr := closedAddr(t)
	for name, cfg := range map[string]Config{
		"token endpoint": {
			Name: "rcv", Endpoint: "http://" + addr + "/events", InsecureHTTP: true,
			Auth: AuthConfig{TokenURL: "http://" + addr + "/token?api_key=" + value + "&tenant=" + value,
				ClientID: testClientID, ClientSecret: secret.Value(testSecret)},
			Timeout: 5 * time.Second,
		},
		"push endpoint": {
			Name: "rcv", Endpoint: "http://" + addr + "/events?api_key=" + value, InsecureHTTP: true,
			Timeout: 5 * time.Second,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, logs := newTestClient(t, cfg)
			r := c.Push(context.Background(), []byte("a.b.c"))
			if r.Outcome == Delivered || r.Cause == nil {
				t.Fatalf("push to a closed port: %+v", r)
			}
			out := []string{r.Error().Error(), fmt.Sprint(r.Cause), fmt.Sprintf("%+v", r), c.String()}
			var te *TokenError
			if errors.As(r.Cause, &te) {
				out = append(out, te.Error())
			}
			for _, e := range logs.All() {
				out = append(out, e.Message, fmt.Sprintf("%+v", e.ContextMap()))
			}
			all := strings.Join(out, "\n")
			if strings.Contains(all, value) {
				t.Errorf("a query value reached the output:\n%s", all)
			}
			// The error must still say where it failed: host and redaction.
			if !strings.Contains(r.Error().Error(), addr) || !strings.Contains(r.Error().Error(), "api_key="+secret.Redacted) {
				t.Errorf("the error lost the useful part of the URL: %s", r.Error())
			}
		})
	}
}

// TestCredentialInURLQueryRefused: a credential parameter in the endpoint or
// token URL would be echoed by every log and proxy; New refuses it and says
// which one, without echoing its value.
func TestCredentialInURLQueryRefused(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "rcv", Endpoint: "https://rcv.example/events?access_token=hunter2"},
		{Name: "rcv", Endpoint: "https://rcv.example/events", Auth: AuthConfig{
			TokenURL: "https://rcv.example/token?client_secret=hunter2", ClientID: "id", ClientSecret: "s"}},
	} {
		_, err := New(cfg, nil, nil)
		if !errors.Is(err, ErrConfig) {
			t.Fatalf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "in its query string") {
			t.Errorf("error = %v", err)
		}
	}
}
