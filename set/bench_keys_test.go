package set_test

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

// privFromPEM re-reads a PKCS#8 PEM so the baseline signer holds its own
// copy of the private key, built without setrelay code.
func privFromPEM(b []byte) (any, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParsePKCS8PrivateKey(block.Bytes)
}
