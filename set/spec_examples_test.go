package set_test

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

// TestSpecExamplesSignAndVerify takes every SET example of SSF 1.0 and
// CAEP 1.0 kept in intent/testdata/spec (the complex-subject ones above
// all), decodes it as an intent, builds and signs the SET with setrelay,
// and verifies it with two independent JOSE libraries: lestrrat-go/jwx v3
// and golang-jwt v5. The verified claims must carry the specification's
// sub_id unchanged at the top level (and, for in_event receivers, inside
// the event), and the specification's event members.
func TestSpecExamplesSignAndVerify(t *testing.T) {
	data, err := os.ReadFile("../intent/testdata/spec/examples.json")
	if err != nil {
		t.Fatal(err)
	}
	var examples []struct {
		Name string         `json:"name"`
		SET  map[string]any `json:"set"`
	}
	if err := json.Unmarshal(data, &examples); err != nil {
		t.Fatal(err)
	}
	k, err := signer.GenerateKey("ES256", "spec-key")
	if err != nil {
		t.Fatal(err)
	}
	s, err := signer.New(k)
	if err != nil {
		t.Fatal(err)
	}
	complexSeen := 0
	for _, ex := range examples {
		subID := ex.SET["sub_id"].(map[string]any)
		if subID["format"] == "complex" {
			complexSeen++
		}
		var typ string
		var event map[string]any
		for k, v := range ex.SET["events"].(map[string]any) {
			typ, event = k, v.(map[string]any)
		}
		doc, _ := json.Marshal(map[string]any{"id": ex.Name, "type": typ, "subject": subID, "event": event})
		for _, placement := range []set.Placement{set.PlacementSubID, set.PlacementInEvent} {
			t.Run(ex.Name+"/"+string(placement), func(t *testing.T) {
				in, err := intent.Decode(doc, intent.Options{})
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				p := set.Profile{Receiver: "rcv", Issuer: "https://idp.example.com/", Audience: []string{"636C69656E745F6964"}, Placement: placement}
				claims, err := set.Build(in, p, set.Options{IssuedAt: time.Unix(1615305159, 0)})
				if err != nil {
					t.Fatal(err)
				}
				compact, err := s.Sign(claims, true)
				if err != nil {
					t.Fatal(err)
				}

				payload, err := jws.Verify([]byte(compact), jws.WithKey(jwa.ES256(), k.Public()))
				if err != nil {
					t.Fatalf("jwx does not verify: %v", err)
				}
				var got map[string]any
				if err := json.Unmarshal(payload, &got); err != nil {
					t.Fatal(err)
				}

				var mc jwt.MapClaims
				tok, err := jwt.ParseWithClaims(compact, &mc, func(*jwt.Token) (any, error) { return k.Public(), nil },
					jwt.WithValidMethods([]string{"ES256"}), jwt.WithIssuer(p.Issuer), jwt.WithAudience(p.Audience[0]),
					jwt.WithTimeFunc(func() time.Time { return time.Unix(1615305160, 0) }))
				if err != nil || !tok.Valid {
					t.Fatalf("golang-jwt does not verify: %v", err)
				}
				if tok.Header["typ"] != "secevent+jwt" {
					t.Errorf("typ = %v", tok.Header["typ"])
				}
				if !reflect.DeepEqual(map[string]any(mc), got) {
					t.Error("the two libraries read different claims")
				}

				gotEvent := got["events"].(map[string]any)[typ].(map[string]any)
				if placement == set.PlacementSubID {
					if !reflect.DeepEqual(got["sub_id"], any(subID)) {
						t.Errorf("sub_id = %v, want the specification's %v", got["sub_id"], subID)
					}
					if _, ok := gotEvent["subject"]; ok {
						t.Error("subject inside the event for a sub_id receiver")
					}
				} else {
					if _, ok := got["sub_id"]; ok {
						t.Error("sub_id present for an in_event receiver")
					}
					if !reflect.DeepEqual(gotEvent["subject"], any(subID)) {
						t.Errorf("event subject = %v, want %v", gotEvent["subject"], subID)
					}
					delete(gotEvent, "subject")
				}
				if !reflect.DeepEqual(gotEvent, event) {
					t.Errorf("event = %v, want the specification's %v", gotEvent, event)
				}
				if _, ok := got["sub"]; ok {
					t.Error("sub present")
				}
			})
		}
	}
	if complexSeen < 4 {
		t.Fatalf("only %d complex-subject examples", complexSeen)
	}
}
