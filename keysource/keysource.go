// Package keysource opens setrelay's signing keys wherever they live: a
// PEM or JWK file, a PKCS#11 token (an HSM), or a cloud KMS. Every source
// ends as a *signer.Key, so the JWKS, the PEM handed to a receiver's
// operators, and signing work the same for all of them.
//
// A remote source is a crypto.Signer whose Public answers from the public
// key read once when the key is opened and whose Sign sends a digest to the
// device; signer.NewRemoteKey checks the configured alg against the key's
// real type and adapts it to go-jose's OpaqueSigner. Adding another KMS
// (GCP KMS, Azure Key Vault, Vault Transit) is one more file: a function
// with the signature of kmsOpener, listed in kmsProviders, and its name in
// config.KMSProviders.
//
// Sources classify their failures: throttling, a busy device or a lost
// session wrap signer.ErrTransient; a disabled, deleted or denied key wraps
// signer.ErrKeyUnusable.
package keysource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/signer"
)

// DefaultCallTimeout bounds one remote signing call (and waiting for a
// PKCS#11 session): long enough for a slow HSM or a KMS retry, short
// enough that a hung device hands the message back well inside the
// JetStream ack wait.
const DefaultCallTimeout = 10 * time.Second

// Options tune how remote keys are opened.
type Options struct {
	// Sessions is how many signatures may run at once: size it to the
	// worker's concurrency. PKCS#11 opens that many sessions (plus the
	// one that keeps the login alive). 0 means 8.
	Sessions int
	// CallTimeout bounds one remote call; 0 means DefaultCallTimeout.
	CallTimeout time.Duration
	// LookupEnv reads pkcs11.pin_env; nil means os.LookupEnv.
	LookupEnv func(string) (string, bool)
}

func (o Options) withDefaults() Options {
	if o.Sessions <= 0 {
		o.Sessions = 8
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	return o
}

// kmsOpener opens one KMS provider's key.
type kmsOpener func(ctx context.Context, kc config.Key, o Options) (*signer.Key, error)

// kmsProviders maps kms.provider to its opener.
var kmsProviders = map[string]kmsOpener{
	"aws": openAWS,
}

// Open opens the key kc describes. For a remote key the public key is read
// from the device or KMS here, once; the private key is never read. The
// caller closes the key (Key.Close) when done.
func Open(ctx context.Context, kc config.Key, o Options) (*signer.Key, error) {
	o = o.withDefaults()
	alg := jose.SignatureAlgorithm(kc.Alg)
	switch kc.Source() {
	case "pkcs11":
		return openPKCS11(ctx, kc, o)
	case "kms":
		open, ok := kmsProviders[kc.KMS.Provider]
		if !ok {
			return nil, fmt.Errorf("kms provider %q is not supported (use one of %s)", kc.KMS.Provider, strings.Join(config.KMSProviders, ", "))
		}
		return open(ctx, kc, o)
	default:
		var lo []signer.LoadOption
		if kc.InsecurePermissions {
			lo = append(lo, signer.InsecurePermissions())
		}
		return signer.LoadKey(kc.File, kc.ID, alg, lo...)
	}
}

// Signer builds the signer of an opened key with the configured options:
// metrics (may be nil) and keys[].max_sign_rate. A Sign that would wait more
// than the call timeout for its turn under the rate fails as transient.
func Signer(k *signer.Key, kc config.Key, m *signer.Metrics, o Options) (*signer.Signer, error) {
	o = o.withDefaults()
	var opts []signer.Option
	if m != nil {
		opts = append(opts, signer.WithMetrics(m))
	}
	if kc.MaxSignRate > 0 {
		opts = append(opts, signer.WithRateLimit(kc.MaxSignRate, o.CallTimeout))
	}
	return signer.New(k, opts...)
}

// readPIN reads the PKCS#11 user PIN from pin_file or pin_env. Errors name
// the file or variable, never the PIN.
func readPIN(h *config.PKCS11Key, o Options) (string, error) {
	switch {
	case h.PinFile != "":
		b, err := os.ReadFile(h.PinFile)
		if err != nil {
			return "", fmt.Errorf("read pkcs11 pin_file: %w", err)
		}
		pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if pin == "" {
			return "", fmt.Errorf("pkcs11 pin_file %s is empty", h.PinFile)
		}
		return pin, nil
	case h.PinEnv != "":
		pin, ok := o.LookupEnv(h.PinEnv)
		if !ok || pin == "" {
			return "", fmt.Errorf("pkcs11 pin_env: environment variable %s is not set; export the token's user PIN in it", h.PinEnv)
		}
		return pin, nil
	default:
		return "", fmt.Errorf("pkcs11: give pin_file or pin_env")
	}
}

// signFailure is the error a remote key's Sign returns for err, already
// passed through the source's classifier. A failure the classifier does
// not know is taken as the key's problem (ErrKeyUnusable): only a digest
// crosses to the device, so no SET can cause it, and an unclassified error
// would be retried by the worker as the intent's own failure, counting
// attempts until the receiver's backlog is dead-lettered. Blocked, the
// receivers keep their SETs and a probe finds out when the key works again.
func signFailure(source string, err error) error {
	if errors.Is(err, signer.ErrTransient) || errors.Is(err, signer.ErrKeyUnusable) {
		return err
	}
	return fmt.Errorf("%w: %s refused the signature for a reason setrelay does not recognise, so the key is held unusable until a probe signs again: %w", signer.ErrKeyUnusable, source, err)
}
