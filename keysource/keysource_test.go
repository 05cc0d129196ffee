package keysource

import (
	"errors"
	"fmt"
	"testing"

	"github.com/setrelay/setrelay/signer"
)

// TestSignFailureDefaultsToUnusable: a remote signing failure keeps the
// class its source gave it, and one without a class becomes
// ErrKeyUnusable, never an unclassified error the worker would count
// against the intent and dead-letter.
func TestSignFailureDefaultsToUnusable(t *testing.T) {
	transient := fmt.Errorf("%w: busy", signer.ErrTransient)
	if err := signFailure("x", transient); !errors.Is(err, signer.ErrTransient) || errors.Is(err, signer.ErrKeyUnusable) {
		t.Errorf("transient became %v", err)
	}
	unusable := fmt.Errorf("%w: disabled", signer.ErrKeyUnusable)
	if err := signFailure("x", unusable); err != unusable {
		t.Errorf("unusable became %v", err)
	}
	odd := errors.New("CKR_GENERAL_ERROR")
	err := signFailure("the pkcs11 token", odd)
	if !errors.Is(err, signer.ErrKeyUnusable) || errors.Is(err, signer.ErrTransient) || !errors.Is(err, odd) {
		t.Errorf("unknown failure became %v", err)
	}
}
