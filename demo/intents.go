package demo

import (
	"fmt"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/worker"
)

// SeedIntentID is the id of the first good intent: the account-disabled
// example of the seed page (GOV.UK One Login's "sending security event
// tokens" guide), whose SET the demo prints.
const SeedIntentID = "demo-0001-account-disabled"

// RejectTxnPrefix is the txn prefix the demo's receiver refuses with 400
// invalid_request, to show a receiver's permanent refusal being dead-lettered.
const RejectTxnPrefix = "demo-reject-"

// goodIntents returns n valid intents cycling through four event types, the
// first being the seed page's example. ids are unique within the run.
func goodIntents(n int, now time.Time) []*intent.Intent {
	out := make([]*intent.Intent, 0, n)
	for i := range n {
		seq := i + 1
		var in *intent.Intent
		switch i % 4 {
		case 0:
			// The seed page's example: RISC account-disabled, reason
			// hijacking, an iss_sub subject.
			in = &intent.Intent{
				Type:    "risc.account-disabled",
				Subject: map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "7375626A656374"},
				Event:   map[string]any{"reason": "hijacking"},
				Txn:     "756E69717565206964656E746966696572",
			}
			if seq == 1 {
				in.ID = SeedIntentID
			} else {
				in.ID = fmt.Sprintf("demo-%04d-account-disabled", seq)
				in.Subject["sub"] = fmt.Sprintf("user-%04d", seq)
				in.Txn = fmt.Sprintf("txn-%04d", seq)
			}
		case 1:
			in = &intent.Intent{
				ID:      fmt.Sprintf("demo-%04d-session-revoked", seq),
				Type:    "caep.session-revoked",
				Subject: map[string]any{"format": "email", "email": fmt.Sprintf("user%04d@example.com", seq)},
				Event: map[string]any{
					"event_timestamp":   now.Unix(),
					"initiating_entity": "policy",
					"reason_admin":      map[string]any{"en": "Landspeed policy violation"},
				},
			}
		case 2:
			in = &intent.Intent{
				ID:      fmt.Sprintf("demo-%04d-credential-change", seq),
				Type:    "caep.credential-change",
				Subject: map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": fmt.Sprintf("user-%04d", seq)},
				Event:   map[string]any{"credential_type": "password", "change_type": "update"},
			}
		default:
			// A GOV.UK One Login vocabulary type, with the eventMetadata
			// member GOV.UK puts beside the main event.
			in = &intent.Intent{
				ID:      fmt.Sprintf("demo-%04d-govuk-account-purged", seq),
				Type:    "https://vocab.account.gov.uk/secevent/v1/accountPurged",
				Subject: map[string]any{"format": "uri", "uri": fmt.Sprintf("urn:fdc:gov.uk:2022:demo-%04d", seq)},
				ExtraEvents: map[string]map[string]any{
					"https://vocab.account.gov.uk/secevent/v1/eventMetadata": {"source": "setrelay-demo"},
				},
			}
		}
		out = append(out, in)
	}
	return out
}

// badIntent is an intent that must end in the dead-letter stream, and why.
type badIntent struct {
	id     string
	data   []byte         // published raw, bypassing the producer-side check
	valid  *intent.Intent // or published through the Publisher (a valid intent the receiver refuses)
	reason string         // the expected dead-letter reason
	why    string         // what the newcomer is shown
}

// badIntents are the intents that show dead-lettering: three the worker
// cannot decode or validate, and one valid intent the receiver refuses.
func badIntents() []badIntent {
	return []badIntent{
		{
			id:     "demo-bad-malformed-json",
			data:   []byte(`{"id":"demo-bad-malformed-json","type":"risc.account-disabled","subject":{"format":`),
			reason: worker.ReasonInvalidIntent,
			why:    "malformed JSON",
		},
		{
			id:     "demo-bad-unknown-type",
			data:   []byte(`{"id":"demo-bad-unknown-type","type":"https://schemas.openid.net/secevent/risc/event-type/account-frozen","subject":{"format":"email","email":"a@example.com"}}`),
			reason: worker.ReasonInvalidIntent,
			why:    "unknown event type",
		},
		{
			id:     "demo-bad-missing-subject",
			data:   []byte(`{"id":"demo-bad-missing-subject","type":"caep.session-revoked","event":{"event_timestamp":1700000000}}`),
			reason: worker.ReasonInvalidIntent,
			why:    "missing subject",
		},
		{
			id: "demo-bad-receiver-refuses",
			valid: &intent.Intent{
				ID:      "demo-bad-receiver-refuses",
				Type:    "risc.account-disabled",
				Subject: map[string]any{"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "refused"},
				Event:   map[string]any{"reason": "bulk-account"},
				Txn:     RejectTxnPrefix + "0001",
			},
			reason: "invalid_request",
			why:    "receiver answers 400 invalid_request",
		},
	}
}
