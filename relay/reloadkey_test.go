package relay

import (
	"context"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/setrelay/setrelay/internal/testenv"
	"github.com/setrelay/setrelay/signer"
)

// TestReloadRefusesAnUnpublishedFileKey: a blocked receiver's probe
// re-reads its key file. /jwks.json was encoded at start-up, so a file
// that now holds another key would have SETs signed under the published
// kid by a key the JWKS does not hold (RFC 7517 section 4.5: the kid is
// "used to match a specific key"), and every receiver that verifies with
// the JWKS would reject them. The reload refuses it, saying to restart,
// as a PKCS#11 key does; the same key rewritten (another PEM form) is
// accepted.
func TestReloadRefusesAnUnpublishedFileKey(t *testing.T) {
	rc := testenv.WriteRelayConfig(t, testenv.RelayOptions{Endpoint: "http://127.0.0.1:1/events"})
	cfg := rc.Config
	kc := cfg.Keys[0]
	s := &Service{cfg: cfg, log: zap.NewNop(), keys: []*signer.Key{rc.Key}, signers: map[string]*signer.Signer{}}
	sg, err := signer.New(rc.Key)
	if err != nil {
		t.Fatal(err)
	}
	s.signers[kc.ID] = sg
	r := cfg.Receivers[0]

	// The same key, rewritten as PKCS#8 with its kid line.
	same, err := rc.Key.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kc.File, same, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.reload(context.Background(), r, kc, nil); err != nil {
		t.Fatalf("reload of the same key: %v", err)
	}

	other, err := signer.GenerateKey(rc.Key.Alg, kc.ID)
	if err != nil {
		t.Fatal(err)
	}
	pemOther, err := other.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kc.File, pemOther, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.reload(context.Background(), r, kc, nil)
	if err == nil || !strings.Contains(err.Error(), "restart") || !strings.Contains(err.Error(), kc.File) {
		t.Fatalf("reload of another key under kid %q: %v, want an error naming the file and saying to restart", kc.ID, err)
	}
}
