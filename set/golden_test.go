package set

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/setrelay/setrelay/intent"
)

var update = flag.Bool("update", false, "rewrite set/testdata golden files")

// seedExample is the account-disabled SET from the GOV.UK seed page
// (000_dbfdaccb937a23c3.txt), verbatim.
const seedExample = `{
  "iss": "https://idp.example.com/",
  "jti": "756E69717565206964656E746966696572",
  "iat": 1508184845,
  "aud": "636C69656E745F6964",
  "events": {
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled": {
      "subject": {
        "subject_type": "iss-sub",
        "iss": "https://idp.example.com/",
        "sub": "7375626A656374"
      },
      "reason": "hijacking"
    }
  }
}`

// seedIntent is the intent a producer would publish for that event. The
// subject uses RFC 9493's "format": "iss_sub"; the page's legacy
// "subject_type": "iss-sub" is deprecated by RISC and not accepted from
// producers.
func seedIntent() *intent.Intent {
	return &intent.Intent{
		ID:        "seed-page-account-disabled",
		Type:      "risc.account-disabled",
		EventType: accountDisabled,
		Subject:   map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
		Event:     map[string]any{"reason": "hijacking"},
	}
}

func TestGoldenSeedExample(t *testing.T) {
	var seed map[string]any
	if err := json.Unmarshal([]byte(seedExample), &seed); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		placement Placement
		file      string
	}{
		{PlacementInEvent, "account-disabled.in_event.json"},
		{PlacementSubID, "account-disabled.sub_id.json"},
	} {
		t.Run(string(tc.placement), func(t *testing.T) {
			p := Profile{Receiver: "govuk", Issuer: "https://idp.example.com/", Audience: []string{"636C69656E745F6964"}, Placement: tc.placement}
			got, err := Build(seedIntent(), p, Options{IssuedAt: time.Unix(1508184845, 0)})
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./set -run Golden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("claims bytes differ from %s:\n got %s\nwant %s", path, got, want)
			}

			var claims, golden map[string]any
			if err := json.Unmarshal(got, &claims); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(want, &golden); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(claims, golden) {
				t.Errorf("claims differ semantically from %s", path)
			}

			// Against the seed page itself: everything matches except the
			// jti (ours is derived from the intent id and receiver), the
			// subject, which is in RFC 9493 form and placed as configured,
			// and txn, which setrelay always sets (SSF 1.0 §4.1.9 says
			// SHOULD; the page's example has none): the intent id here.
			if claims["jti"] != JTI("seed-page-account-disabled", "govuk", "") {
				t.Errorf("jti = %v", claims["jti"])
			}
			wantSubject := map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"}
			expect := clone(t, seed)
			expect["jti"] = claims["jti"]
			expect["txn"] = "seed-page-account-disabled"
			ev := expect["events"].(map[string]any)[accountDisabled].(map[string]any)
			delete(ev, "subject")
			if tc.placement == PlacementInEvent {
				ev["subject"] = wantSubject
			} else {
				expect["sub_id"] = wantSubject
			}
			if !reflect.DeepEqual(claims, expect) {
				t.Errorf("claims do not reproduce the seed page example:\n got %v\nwant %v", claims, expect)
			}
		})
	}
}

func clone(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGoldenFromDecodedIntent runs the producer's JSON through
// intent.Decode, as the worker does, and expects the same golden bytes as
// the hand-built intent.
func TestGoldenFromDecodedIntent(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "account-disabled.intent.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := intent.Decode(raw, intent.Options{})
	if err != nil {
		t.Fatalf("the seed intent does not decode: %v", err)
	}
	if in.EventType != accountDisabled {
		t.Fatalf("EventType = %q", in.EventType)
	}
	for placement, file := range map[Placement]string{PlacementInEvent: "account-disabled.in_event.json", PlacementSubID: "account-disabled.sub_id.json"} {
		p := Profile{Receiver: "govuk", Issuer: "https://idp.example.com/", Audience: []string{"636C69656E745F6964"}, Placement: placement}
		got, err := Build(in, p, Options{IssuedAt: time.Unix(1508184845, 0)})
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: decoded intent builds\n%s\nwant\n%s", placement, got, want)
		}
	}
}
