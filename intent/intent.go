// Package intent is the producers' contract: the event intent that services
// publish to setrelay, and its strict decoding and validation.
//
// An intent is a JSON object:
//
//	{
//	  "id": "acct-42-disabled-1",                 // required idempotency key, 1..128 printable ASCII
//	  "type": "risc.account-disabled",            // alias or event-type URI
//	  "subject": {"format": "iss_sub", "iss": "https://idp.example.com/", "sub": "42"},
//	  "event": {"reason": "hijacking"},           // the event's own members
//	  "occurred_at": "2026-11-27T04:05:06Z",      // optional RFC 3339; becomes toe
//	  "txn": "b9f1c4e2",                          // optional
//	  "receivers": ["govuk"],                     // optional; default every receiver wanting the type
//	  "extra_events": {"https://vocab.account.gov.uk/secevent/v1/eventMetadata": {}}
//	}
//
// Types are the CAEP 1.0, RISC 1.0 and SSF 1.0 catalogue (KnownTypes), by
// alias ("caep.session-revoked") or URI; GOV.UK One Login's
// https://vocab.account.gov.uk/secevent/v1/ vocabulary; and, when
// Options.AllowPrivateTypes is set, any other absolute URI outside the
// reserved OpenID namespaces. Event members that the catalogue requires
// are enforced and enumerations are checked; other members are allowed, as
// the specifications permit extensions. Events of GOV.UK and private types
// are free-form objects.
//
// The subject is an RFC 9493 / SSF 1.0 subject identifier (format plus
// exactly that format's members), an SSF 1.0 complex subject ("format":
// "complex" plus members such as user, device, session, application,
// tenant, org_unit and group, each a simple identifier), or,
// deprecated and only so the GOV.UK seed example can be reproduced, the
// legacy RISC form {"subject_type": "iss-sub", "iss": ..., "sub": ...}.
// SSF stream events (ssf.verification, ssf.stream-updated) need no subject.
//
// Decode reports every problem at once in a *ValidationError whose entries
// name the JSON path of the field. Schema returns the equivalent JSON
// Schema for producers in other languages.
package intent

import "time"

// MaxSize is the largest intent, in bytes, that Decode accepts.
const MaxSize = 64 << 10

// Intent asks setrelay to tell receivers that a security event happened.
type Intent struct {
	ID          string                    `json:"id"`
	Type        string                    `json:"type"`
	Subject     map[string]any            `json:"subject,omitempty"`
	Event       map[string]any            `json:"event,omitempty"`
	OccurredAt  *time.Time                `json:"occurred_at,omitempty"`
	Txn         string                    `json:"txn,omitempty"`
	Receivers   []string                  `json:"receivers,omitempty"`
	ExtraEvents map[string]map[string]any `json:"extra_events,omitempty"`

	// EventType is the resolved absolute event-type URI. Decode and Validate
	// fill it; it is not part of the wire format.
	EventType string `json:"-"`
}
