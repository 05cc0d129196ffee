package relay_test

import (
	"context"
	"strings"
	"testing"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/relay"
)

// TestStartRefusesAQueueOnlyConfiguration: a configuration loaded for a
// producer (config.QueueOnly) holds placeholders for the receivers'
// credentials, and a relay given one refuses to start rather than send
// them to a token endpoint.
func TestStartRefusesAQueueOnlyConfiguration(t *testing.T) {
	y := `issuer: https://rp.example/
keys: [{id: k, file: /nonexistent/k.pem, alg: ES256}]
receivers:
  - name: r
    endpoint: https://rcv.example/events
    audience: https://rcv.example/
    key: k
    auth: {token_url: https://rcv.example/token, client_id: c, client_secret: "${SETRELAY_TEST_UNSET_SECRET}"}
`
	cfg, err := config.Parse([]byte(y), "x.yaml", func(string) (string, bool) { return "", false }, config.QueueOnly())
	if err != nil {
		t.Fatal(err)
	}
	_, err = relay.Start(context.Background(), cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), "QueueOnly") {
		t.Fatalf("Start with a QueueOnly configuration: %v", err)
	}
}
