// Package intent is the producers' contract: the event intent that services
// publish, and its strict decoding and validation.
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
