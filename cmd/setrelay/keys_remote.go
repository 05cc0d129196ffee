package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/signer"
)

// remoteGenFlags are `keys generate`'s flags for a key created inside a
// PKCS#11 token or a KMS instead of a file.
type remoteGenFlags struct {
	pkcs11, kms bool
	// PKCS#11
	module, tokenLabel, keyLabel, keyID, pinFile, pinEnv string
	slot                                                 int
	// KMS
	region, endpoint, alias, description string
}

func (r *remoteGenFlags) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&r.pkcs11, "pkcs11", false, "create a non-extractable key pair on a PKCS#11 token instead of a file")
	f.StringVar(&r.module, "module", "", "with --pkcs11: the token vendor's PKCS#11 library (SoftHSM: /usr/lib/softhsm/libsofthsm2.so)")
	f.StringVar(&r.tokenLabel, "token-label", "", "with --pkcs11: the token's label")
	f.IntVar(&r.slot, "slot", -1, "with --pkcs11: the token's slot number, instead of --token-label")
	f.StringVar(&r.keyLabel, "key-label", "", "with --pkcs11: the new key's label (CKA_LABEL); default: --id")
	f.StringVar(&r.keyID, "key-id", "", "with --pkcs11: the new key's CKA_ID in hex; default: random")
	f.StringVar(&r.pinFile, "pin-file", "", "with --pkcs11: file holding the token's user PIN")
	f.StringVar(&r.pinEnv, "pin-env", "", "with --pkcs11: environment variable holding the token's user PIN")
	f.BoolVar(&r.kms, "kms", false, "create an asymmetric SIGN_VERIFY key in AWS KMS instead of a file (needs kms:CreateKey)")
	f.StringVar(&r.region, "region", "", "with --kms: the AWS region (default: AWS_REGION or the shared config)")
	f.StringVar(&r.endpoint, "endpoint", "", "with --kms: a KMS endpoint URL (a VPC endpoint, or an emulator such as local-kms)")
	f.StringVar(&r.alias, "alias", "", "with --kms: also create this alias (alias/NAME) for the key (needs kms:CreateAlias)")
	f.StringVar(&r.description, "description", "", "with --kms: the key's description (default: names setrelay and the key id)")
}

func (r *remoteGenFlags) set() bool { return r.pkcs11 || r.kms }

// run creates the key in place and prints its configuration snippet.
func (r *remoteGenFlags) run(cmd *cobra.Command, alg jose.SignatureAlgorithm, id, out string) error {
	if r.pkcs11 && r.kms {
		return usageErrorf("give --pkcs11 or --kms, not both")
	}
	if out != "" {
		return usageErrorf("--out writes a key file; a key made with --pkcs11 or --kms never leaves its token or KMS")
	}
	if alg == jose.EdDSA {
		return usageErrorf("--alg EdDSA is for file keys; HSM and KMS keys sign with RS256, PS256, ES256 or ES384")
	}
	if id == "" {
		return usageErrorf("--id is required with --pkcs11 and --kms: the key id (kid) the configuration and receivers use")
	}
	w := cmd.OutOrStdout()
	if r.kms {
		desc := r.description
		if desc == "" {
			desc = fmt.Sprintf("setrelay SET signing key %s (%s)", id, alg)
		}
		arn, err := keysource.GenerateKMS(cmd.Context(), keysource.GenerateKMSRequest{Alg: alg, Region: r.region, Endpoint: r.endpoint, Alias: r.alias, Description: desc})
		if err != nil {
			if arn != "" {
				fmt.Fprintf(w, "created KMS key %s, but: %v\n", arn, err)
			}
			return err
		}
		spec, _ := keysource.KMSKeySpec(alg)
		fmt.Fprintf(w, "created %s KMS key (%s, SIGN_VERIFY); the private key never leaves KMS\n", alg, spec)
		fmt.Fprintf(w, "key arn: %s\n", arn)
		fmt.Fprintf(w, "key id: %s\n", id)
		keyRef := arn
		if r.alias != "" {
			keyRef = r.alias
			if !strings.HasPrefix(keyRef, "alias/") {
				keyRef = "alias/" + keyRef
			}
		}
		snippet := fmt.Sprintf("{id: %s, alg: %s, kms: {provider: aws, key_id: %s", id, alg, keyRef)
		if r.region != "" {
			snippet += ", region: " + r.region
		}
		if r.endpoint != "" {
			snippet += ", endpoint: " + r.endpoint
		}
		snippet += "}}"
		fmt.Fprintf(w, "public key for the receiver's operators: setrelay keys pem --config CONFIG --key-id %s\n", id)
		_, err = fmt.Fprintf(w, "configuration: keys: [%s]\n", snippet)
		return err
	}

	if r.module == "" {
		return usageErrorf("--module is required with --pkcs11: the token vendor's PKCS#11 library")
	}
	if (r.tokenLabel == "") == (r.slot < 0) {
		return usageErrorf("give one of --token-label and --slot to choose the token")
	}
	if (r.pinFile == "") == (r.pinEnv == "") {
		return usageErrorf("give one of --pin-file and --pin-env: the token's user PIN is never given on the command line")
	}
	tok := config.PKCS11Key{Module: r.module, TokenLabel: r.tokenLabel, KeyLabel: r.keyLabel, KeyID: r.keyID, PinFile: r.pinFile, PinEnv: r.pinEnv}
	if tok.KeyLabel == "" {
		tok.KeyLabel = id
	}
	if r.slot >= 0 {
		slot := r.slot
		tok.Slot = &slot
	}
	hexID, err := keysource.GeneratePKCS11(keysource.GeneratePKCS11Request{Alg: alg, Token: tok}, keysource.Options{Sessions: 2})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "created %s key pair on the token: label %q, CKA_ID %s; the private key is sensitive and not extractable\n", alg, tok.KeyLabel, hexID)
	fmt.Fprintf(w, "key id: %s\n", id)
	token := "token_label: " + strconv.Quote(tok.TokenLabel)
	if tok.Slot != nil {
		token = fmt.Sprintf("slot: %d", *tok.Slot)
	}
	pin := "pin_file: " + tok.PinFile
	if tok.PinEnv != "" {
		pin = "pin_env: " + tok.PinEnv
	}
	fmt.Fprintf(w, "public key for the receiver's operators: setrelay keys pem --config CONFIG --key-id %s\n", id)
	_, err = fmt.Fprintf(w, "configuration: keys: [{id: %s, alg: %s, pkcs11: {module: %s, %s, key_label: %s, key_id: %s, %s}}]\n",
		id, alg, tok.Module, token, strconv.Quote(tok.KeyLabel), hexID, pin)
	return err
}

// keyOpenError is the error of a key that would not open: a usage error
// (status 2) for a mistake in the configuration, a plain failure (status 1)
// when the HSM or KMS was only unreachable or busy, as a retry may work.
func keyOpenError(id string, err error) error {
	if errors.Is(err, signer.ErrTransient) {
		return fmt.Errorf("key %q: %w", id, err)
	}
	return usageErrorf("key %q: %w", id, err)
}
