package signer

import "errors"

// ErrTransient marks a signing failure that is worth retrying soon: a KMS
// throttling answer, an HSM that is busy or lost its session. It is the
// key's problem, not the receiver's, so it counts toward neither the
// receiver's failing state nor the intent's attempts.
var ErrTransient = errors.New("signer: transient signing failure")

// ErrKeyUnusable marks a key that is disabled, deleted, or denied to this
// relay: a configuration failure that blocks the receivers using the key
// until an operator fixes it.
var ErrKeyUnusable = errors.New("signer: key unusable")
