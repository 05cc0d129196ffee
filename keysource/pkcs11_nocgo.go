//go:build !cgo

package keysource

import (
	"context"
	"errors"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/signer"
)

// PKCS11Supported reports whether this build can use PKCS#11 tokens. This
// one was built with CGO_ENABLED=0, and PKCS#11 modules are C libraries.
const PKCS11Supported = false

var errNoPKCS11 = errors.New("this setrelay was built without cgo and cannot load PKCS#11 modules; use a build with CGO_ENABLED=1 (the release image is one)")

func openPKCS11(context.Context, config.Key, Options) (*signer.Key, error) {
	return nil, errNoPKCS11
}

// GeneratePKCS11Request describes a new key pair on a token.
type GeneratePKCS11Request struct {
	Alg   jose.SignatureAlgorithm
	Token config.PKCS11Key
}

// GeneratePKCS11 needs cgo; see PKCS11Supported.
func GeneratePKCS11(GeneratePKCS11Request, Options) (string, error) { return "", errNoPKCS11 }

// PrivateKeyAttributes needs cgo; see PKCS11Supported.
func PrivateKeyAttributes(config.Key, Options) (bool, bool, error) { return false, false, errNoPKCS11 }
