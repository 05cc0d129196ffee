package intent_test

import (
	"errors"
	"fmt"

	"github.com/setrelay/setrelay/intent"
)

// A producer (or the relay) decodes an intent received as JSON.
func ExampleDecode() {
	data := []byte(`{
		"id": "acct-42-disabled-1",
		"type": "risc.account-disabled",
		"subject": {"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
		"event": {"reason": "hijacking"},
		"occurred_at": "2026-11-27T04:05:06Z"
	}`)
	in, err := intent.Decode(data, intent.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(in.EventType)
	fmt.Println(in.Event["reason"], in.OccurredAt.Unix())
	// Output:
	// https://schemas.openid.net/secevent/risc/event-type/account-disabled
	// hijacking 1795752306
}

// Every problem is reported at once, each naming its field.
func ExampleDecode_invalid() {
	data := []byte(`{
		"id": "cc 1",
		"type": "caep.credential-change",
		"subject": {"format": "email", "email": "alice"},
		"event": {"credential_type": "password", "change_type": "rotate"}
	}`)
	_, err := intent.Decode(data, intent.Options{})
	var ve *intent.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			fmt.Printf("%s: %s\n", fe.Field, fe.Problem)
		}
	}
	// Output:
	// id: must be printable ASCII without spaces (it becomes the Nats-Msg-Id); bad character at byte 2
	// subject.email: "alice" is not an email address like "user@example.com"
	// event.change_type: "rotate" is not allowed; use one of create, revoke, update, delete
}

// A Go service builds the intent directly and validates it before
// publishing; Validate fills EventType.
func ExampleIntent_Validate() {
	in := &intent.Intent{
		ID:      "sess-9f2c-revoked",
		Type:    "caep.session-revoked",
		Subject: map[string]any{"format": "email", "email": "alice@example.com"},
		Event:   map[string]any{"initiating_entity": "admin", "reason_admin": map[string]any{"en": "Stolen laptop"}},
	}
	if err := in.Validate(intent.Options{}); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(in.EventType, in.WantsSubject())
	// Output:
	// https://schemas.openid.net/secevent/caep/event-type/session-revoked true
}

// ResolveType maps aliases to the URIs that appear in SETs.
func ExampleResolveType() {
	for _, name := range []string{"ssf.verification", "https://vocab.account.gov.uk/secevent/v1/accountPurged", "urn:example:private"} {
		uri, known := intent.ResolveType(name)
		fmt.Println(uri, known)
	}
	// Output:
	// https://schemas.openid.net/secevent/ssf/event-type/verification true
	// https://vocab.account.gov.uk/secevent/v1/accountPurged true
	// urn:example:private false
}
