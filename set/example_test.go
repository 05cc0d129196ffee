package set_test

import (
	"fmt"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/set"
)

// The claims GOV.UK-style receivers want: the subject inside the event, a
// single-string audience. Build them once per receiver; the bytes are the
// same every time for the same intent, receiver and issue time.
func ExampleBuild() {
	in := &intent.Intent{
		ID:        "seed-page-account-disabled",
		Type:      "risc.account-disabled",
		EventType: "https://schemas.openid.net/secevent/risc/event-type/account-disabled",
		Subject:   map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
		Event:     map[string]any{"reason": "hijacking"},
	}
	p := set.Profile{
		Receiver:  "govuk",
		Issuer:    "https://idp.example.com/",
		Audience:  []string{"636C69656E745F6964"},
		Placement: set.PlacementInEvent,
	}
	claims, err := set.Build(in, p, set.Options{IssuedAt: time.Unix(1508184845, 0)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(claims))
	// Output:
	// {"iss":"https://idp.example.com/","iat":1508184845,"jti":"e633a0f0912a92a1d9a3e9db09601b87","aud":"636C69656E745F6964","txn":"seed-page-account-disabled","events":{"https://schemas.openid.net/secevent/risc/event-type/account-disabled":{"reason":"hijacking","subject":{"format":"iss_sub","iss":"https://idp.example.com/","sub":"7375626A656374"}}}}
}
