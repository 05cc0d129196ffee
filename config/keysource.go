package config

import (
	"net"
	"net/url"
	"slices"
	"strings"
)

// Key sources other than a file. Each names where the private key lives;
// the private half is never read, only used to sign.

// PKCS11Key is a key on a PKCS#11 token. The token is chosen by label or by
// slot, the key by label and/or id. The PIN comes from a file or an
// environment variable, never from the configuration itself, so the
// configuration can be committed.
type PKCS11Key struct {
	// Module is the vendor's PKCS#11 library, e.g.
	// /usr/lib/softhsm/libsofthsm2.so.
	Module string `yaml:"module" json:"module"`
	// TokenLabel or Slot selects the token; give exactly one.
	TokenLabel string `yaml:"token_label,omitempty" json:"token_label,omitempty"`
	Slot       *int   `yaml:"slot,omitempty" json:"slot,omitempty"`
	// KeyLabel (CKA_LABEL) and/or KeyID (CKA_ID, hex) select the key pair.
	KeyLabel string `yaml:"key_label,omitempty" json:"key_label,omitempty"`
	KeyID    string `yaml:"key_id,omitempty" json:"key_id,omitempty"`
	// PinFile is a file holding the user PIN (one trailing newline is
	// trimmed); PinEnv names an environment variable holding it. Give one.
	PinFile string `yaml:"pin_file,omitempty" json:"pin_file,omitempty"`
	PinEnv  string `yaml:"pin_env,omitempty" json:"pin_env,omitempty"`
}

// KMSKey is an asymmetric SIGN_VERIFY key in a cloud KMS. Credentials come
// from the provider's standard chain (for AWS: environment, shared config
// and credentials files, web identity, ECS and EC2 instance roles).
type KMSKey struct {
	// Provider is the KMS: "aws".
	Provider string `yaml:"provider" json:"provider"`
	// KeyID is the key's id, ARN, alias name (alias/...) or alias ARN.
	KeyID string `yaml:"key_id" json:"key_id"`
	// Region is the key's region, e.g. eu-west-2. Empty takes the region
	// from the standard chain (AWS_REGION, the shared config).
	Region string `yaml:"region,omitempty" json:"region,omitempty"`
	// Endpoint overrides the KMS endpoint: a VPC endpoint (https), or an
	// emulator such as local-kms in tests, the only case where plain
	// http:// is accepted, and only on a loopback address.
	Endpoint string `yaml:"endpoint,omitempty" json:"endpoint,omitempty"`
}

// KMSProviders are the kms.provider values setrelay supports.
var KMSProviders = []string{"aws"}

// Source names where the key lives, for messages: "file", "pkcs11" or
// "kms".
func (k Key) Source() string {
	switch {
	case k.PKCS11 != nil:
		return "pkcs11"
	case k.KMS != nil:
		return "kms"
	default:
		return "file"
	}
}

// validateSource checks that exactly one source is set and that it is
// complete. A remote key's alg may be empty (taken from the key type).
func (k Key) validateSource(p *problems, path string) {
	n := 0
	for _, set := range []bool{k.File != "", k.PKCS11 != nil, k.KMS != nil} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		p.add(path+".file", "required: the PEM or JWK file holding the private key (or pkcs11: or kms: for a key in an HSM or KMS)")
	case n > 1:
		p.add(path, "give exactly one of file, pkcs11 and kms")
	}
	if k.MaxSignRate < 0 {
		p.add(path+".max_sign_rate", "must be 0 (no cap) or a positive number of signatures per second")
	}
	if h := k.PKCS11; h != nil {
		b := path + ".pkcs11"
		if h.Module == "" {
			p.add(b+".module", "required: the path of the token vendor's PKCS#11 library (SoftHSM: /usr/lib/softhsm/libsofthsm2.so)")
		}
		if (h.TokenLabel == "") == (h.Slot == nil) {
			p.add(b, "give exactly one of token_label and slot to choose the token")
		}
		if h.KeyLabel == "" && h.KeyID == "" {
			p.add(b, "give key_label and/or key_id to choose the key")
		}
		if h.KeyID != "" && !isHex(h.KeyID) {
			p.add(b+".key_id", "must be the CKA_ID in hex, e.g. 0a1b (got %q)", h.KeyID)
		}
		if (h.PinFile == "") == (h.PinEnv == "") {
			p.add(b, "give exactly one of pin_file and pin_env; the PIN is never written in the configuration")
		}
	}
	if m := k.KMS; m != nil {
		b := path + ".kms"
		if !slices.Contains(KMSProviders, m.Provider) {
			p.add(b+".provider", "must be one of %s (got %q)", strings.Join(KMSProviders, ", "), m.Provider)
		}
		if m.KeyID == "" {
			p.add(b+".key_id", "required: the key id, ARN or alias (create a key with `setrelay keys generate --kms --alg RS256`)")
		}
		switch {
		case m.Endpoint == "":
		case !strings.HasPrefix(m.Endpoint, "https://") && !strings.HasPrefix(m.Endpoint, "http://"):
			p.add(b+".endpoint", "must be an http(s) URL (got %q)", m.Endpoint)
		case strings.HasPrefix(m.Endpoint, "http://") && !loopbackURL(m.Endpoint):
			// Over plain HTTP anyone on the path could answer
			// GetPublicKey with a key of their own, which /jwks.json
			// would then publish as this issuer's, and could read the
			// session token of every request.
			p.add(b+".endpoint", "plain http:// is only for an emulator on this host (127.0.0.1, ::1, localhost): use the https:// URL of the KMS or VPC endpoint (got %q)", m.Endpoint)
		}
	}
}

// loopbackURL reports whether raw's host is this machine: localhost or a
// loopback address.
func loopbackURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isHex(s string) bool {
	if len(s)%2 != 0 {
		return false
	}
	for _, c := range strings.ToLower(s) {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
