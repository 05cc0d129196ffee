package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/signer"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Generate signing keys and print their public halves (JWKS, PEM)",
		Long: `Manage the keys setrelay signs SETs with.

A receiver verifies your SETs with your public key: either its operators are
sent the public key (GOV.UK One Login asks for a PEM: 'setrelay keys pem'), or
the receiver fetches the JWKS that 'setrelay run' serves at /jwks.json (the same
document 'setrelay keys jwks' prints).`,
		Example: `  setrelay keys generate --alg RS256 --id rp-2026-11 --out keys/rp-2026-11.pem
  setrelay keys pem --key keys/rp-2026-11.pem
  setrelay keys jwks --key keys/rp-2026-11.pem --kid rp-2026-11`,
		// A group command: without a subcommand it shows its help, and an
		// unknown subcommand is a usage error rather than help and status 0.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q\nRun '%s --help' for usage.", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(newKeysGenerateCmd(), newKeysJWKSCmd(), newKeysPEMCmd())
	return cmd
}

func algNames() string {
	var names []string
	for _, a := range signer.Algorithms() {
		names = append(names, string(a))
	}
	return strings.Join(names, ", ")
}

func parseAlg(s string) (jose.SignatureAlgorithm, error) {
	for _, a := range signer.Algorithms() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", usageErrorf("--alg %q: use one of %s", s, algNames())
}

func newKeysGenerateCmd() *cobra.Command {
	var alg, out, id string
	var force, ifMissing bool
	var remote remoteGenFlags
	cmd := &cobra.Command{
		Use:   "generate --alg ALG (--out FILE | --pkcs11 ... | --kms ...)",
		Short: "Generate a private signing key (a PEM file, or in an HSM or KMS)",
		Long: `Generate a new private key and write it as PKCS#8 PEM with mode 0600.

Algorithms: RS256 and PS256 (RSA 2048), ES256 (P-256), ES384 (P-384), EdDSA
(Ed25519). GOV.UK One Login requires RS256. The key id (kid) defaults to the
key's RFC 7638 thumbprint; choose a readable one with --id and use the same id
in the configuration's keys[].id. An existing file is not overwritten unless
--force is given; with --if-missing an existing file is left as it is and the
command succeeds, so a container can run it on every start (docker-compose.yml's
keygen service does). The key id and the commands to hand over the public key
are printed on stdout.

With --pkcs11 the key pair is created on a PKCS#11 token (an HSM, SoftHSM) as
sensitive and not extractable: it can sign but never leave the token. With --kms
an asymmetric SIGN_VERIFY key is created in AWS KMS (RSA_2048 for RS256 and
PS256, ECC_NIST_P256 for ES256, ECC_NIST_P384 for ES384) and its ARN printed;
credentials come from the standard AWS chain. Both print the keys[] entry to
put in the configuration.`,
		Example: `  setrelay keys generate --alg RS256 --id rp-2026-11 --out keys/rp-2026-11.pem
  setrelay keys generate --alg RS256 --id rp-2026-11 --kms --region eu-west-2 --alias setrelay-rp-2026-11
  setrelay keys generate --alg ES256 --id ssf-1 --pkcs11 --module /usr/lib/softhsm/libsofthsm2.so \
      --token-label setrelay --pin-env SETRELAY_PKCS11_PIN
  setrelay keys generate --alg ES256 --out ssf.pem --force
  setrelay keys generate --alg RS256 --out /keys/signing.pem --if-missing`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := parseAlg(alg)
			if err != nil {
				return err
			}
			if remote.set() {
				return remote.run(cmd, a, id, out)
			}
			if out == "" {
				return usageErrorf("--out is required: the file to write the private key to")
			}
			if force && ifMissing {
				return usageErrorf("--force replaces an existing key and --if-missing keeps it: give one of them")
			}
			w := cmd.OutOrStdout()
			keep := func() error {
				_, err := fmt.Fprintf(w, "%s already exists; left as it is (--if-missing)\n", out)
				return err
			}
			// Checked before generating, so a start-up that finds the key
			// does not pay for an RSA key it throws away.
			if _, err := os.Lstat(out); ifMissing && err == nil {
				return keep()
			}
			k, err := signer.GenerateKey(a, id)
			if err != nil {
				return fmt.Errorf("generate key: %w", err)
			}
			pemBytes, err := k.PrivatePEM()
			if err != nil {
				return err
			}
			if err := writePrivate(out, pemBytes, force); err != nil {
				// Another process created the file since the check above
				// (two containers starting at once): theirs is kept.
				if ifMissing && errors.Is(err, fs.ErrExist) {
					return keep()
				}
				return err
			}
			fmt.Fprintf(w, "wrote %s private key to %s (mode 0600)\nkey id: %s\n", a, out, k.ID)
			if id != "" {
				fmt.Fprintf(w, "the key id is kept in the file (a \"kid: %s\" line before the PEM block), so 'keys jwks --key %s' shows it\n", k.ID, out)
			}
			fmt.Fprintf(w, "public key for the receiver's operators: setrelay keys pem --key %s\n", out)
			_, err = fmt.Fprintf(w, "configuration: keys: [{id: %s, file: %s, alg: %s}]\n", k.ID, out, a)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&alg, "alg", "RS256", "signature algorithm: "+algNames())
	f.StringVar(&out, "out", "", "file to write the private key to (required, unless --pkcs11 or --kms)")
	f.StringVar(&id, "id", "", "key id (kid); default: the key's thumbprint")
	f.BoolVar(&force, "force", false, "overwrite an existing file")
	f.BoolVar(&ifMissing, "if-missing", false, "leave an existing file as it is and exit 0 (for start-up scripts)")
	remote.register(cmd)
	return cmd
}

// writePrivate writes a private key readable only by its owner. Without
// force it refuses to replace a file: overwriting a key that a receiver has
// registered breaks delivery until the new public key is handed over.
//
// The key is written whole to a temporary file beside path and only then
// put in place (renamed over it with force, hard-linked without, which fails
// if path exists), so a crash never leaves a truncated key that
// --if-missing would then keep for good.
//
// A missing directory is created with mode 0700 (keys/ in a fresh checkout):
// it will hold private keys, so only the owner may list or enter it.
func writePrivate(path string, data []byte, force bool) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	// CreateTemp makes the file 0600 already; set it explicitly anyway, as
	// the mode is the point of this function.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if force {
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("write key: %w", err)
		}
		return nil
	}
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		return &usageError{err: keyExistsError(path)}
	}
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	return nil
}

// keyExistsError is writePrivate's refusal to replace a key file. It
// matches fs.ErrExist, so --if-missing can tell it from other failures.
type keyExistsError string

func (e keyExistsError) Error() string {
	return string(e) + " already exists; pass --force to overwrite it (a receiver that registered the old key will reject SETs signed with the new one)"
}

func (e keyExistsError) Is(target error) bool { return target == fs.ErrExist }

// keyFlags are the flags of the commands that load keys: --key, with
// optional --kid and --alg matched to the keys by position.
type keyFlags struct {
	paths, kids, algs []string
	// insecure is --insecure-key-permissions.
	insecure bool
}

// insecureKeyPermsHelp is the --insecure-key-permissions help text, shared
// by every command that loads keys.
const insecureKeyPermsHelp = "accept private key files readable by group or others (refused by default, as OpenSSH does); only for mounts whose mode you cannot set"

func (kf *keyFlags) register(cmd *cobra.Command, many bool) {
	f := cmd.Flags()
	f.BoolVar(&kf.insecure, "insecure-key-permissions", false, insecureKeyPermsHelp)
	if many {
		f.StringArrayVar(&kf.paths, "key", nil, "private key file, PEM or JWK (repeat for several keys)")
		f.StringArrayVar(&kf.kids, "kid", nil, "key id for the key at the same position (default: the JWK's kid, else the thumbprint)")
		f.StringArrayVar(&kf.algs, "alg", nil, "algorithm for the key at the same position, or one for all (default: from the key type)")
	} else {
		f.StringArrayVar(&kf.paths, "key", nil, "private key file, PEM or JWK")
		f.StringArrayVar(&kf.kids, "kid", nil, "key id (default: the JWK's kid, else the thumbprint)")
		f.StringArrayVar(&kf.algs, "alg", nil, "algorithm (default: from the key type: RSA→RS256, P-256→ES256, P-384→ES384, Ed25519→EdDSA)")
	}
}

// load reads the keys, reporting warnings (a group-readable file) on stderr.
func (kf *keyFlags) load(cmd *cobra.Command, max int) ([]*signer.Key, error) {
	if len(kf.paths) == 0 {
		return nil, usageErrorf("--key is required")
	}
	if max > 0 && len(kf.paths) > max {
		return nil, usageErrorf("--key given %d times; this command takes one key", len(kf.paths))
	}
	if len(kf.kids) > len(kf.paths) {
		return nil, usageErrorf("--kid given %d times for %d keys", len(kf.kids), len(kf.paths))
	}
	if len(kf.algs) > 1 && len(kf.algs) != len(kf.paths) {
		return nil, usageErrorf("--alg given %d times for %d keys: give one for all, or one per key", len(kf.algs), len(kf.paths))
	}
	keys := make([]*signer.Key, 0, len(kf.paths))
	for i, p := range kf.paths {
		var kid string
		if i < len(kf.kids) {
			kid = kf.kids[i]
		}
		var alg jose.SignatureAlgorithm
		switch len(kf.algs) {
		case 0:
		case 1:
			a, err := parseAlg(kf.algs[0])
			if err != nil {
				return nil, err
			}
			alg = a
		default:
			a, err := parseAlg(kf.algs[i])
			if err != nil {
				return nil, err
			}
			alg = a
		}
		var opts []signer.LoadOption
		if kf.insecure {
			opts = append(opts, signer.InsecurePermissions())
		}
		k, err := signer.LoadKey(p, kid, alg, opts...)
		if err != nil {
			return nil, usageErrorf("%w", err)
		}
		for _, w := range k.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func newKeysJWKSCmd() *cobra.Command {
	var kf keyFlags
	var configFile string
	cmd := &cobra.Command{
		Use:   "jwks (--key FILE [--key FILE ...] | --config FILE)",
		Short: "Print the public JWKS of one or more private keys",
		Long: `Print the JSON Web Key Set holding the public halves of the given private keys,
with kid, alg and use=sig. With --config, the keys of a configuration file are
used, with their configured ids and algorithms: this is exactly what
'setrelay run' serves at /jwks.json.

During a key rotation, publish both the old and the new key.`,
		Example: `  setrelay keys jwks --key keys/rp-2026-11.pem --kid rp-2026-11
  setrelay keys jwks --key old.pem --kid k-2026-05 --key new.pem --kid k-2026-11 > jwks.json
  setrelay keys jwks --config configs/ssf.yaml`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var keys []*signer.Key
			var err error
			switch {
			case configFile != "" && len(kf.paths) > 0:
				return usageErrorf("give either --config or --key, not both")
			case configFile != "":
				keys, err = keysFromConfig(cmd, configFile, kf.insecure)
				defer closeAll(keys)
			default:
				keys, err = kf.load(cmd, 0)
			}
			if err != nil {
				return err
			}
			b, err := json.MarshalIndent(signer.JWKS(keys...), "", "  ")
			if err != nil {
				return fmt.Errorf("encode JWKS: %w", err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
			return err
		},
	}
	kf.register(cmd, true)
	cmd.Flags().StringVar(&configFile, "config", "", "take the keys from this configuration file")
	return cmd
}

// keysFromConfig opens every key of a configuration with its id and alg,
// wherever it lives (file, PKCS#11 token, KMS): what `setrelay run` would
// sign with. insecure is --insecure-key-permissions, which applies to
// every key file. The caller closes the keys (closeAll).
func keysFromConfig(cmd *cobra.Command, file string, insecure bool) ([]*signer.Key, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	var (
		keys     []*signer.Key
		problems []config.Problem
	)
	for i, kc := range cfg.Keys {
		kc.InsecurePermissions = kc.InsecurePermissions || insecure
		k, err := keysource.Open(cmd.Context(), kc, keysource.Options{Sessions: 2})
		if errors.Is(err, signer.ErrTransient) {
			closeAll(keys)
			return nil, keyOpenError(kc.ID, err)
		}
		if err != nil {
			problems = append(problems, config.Problem{Path: fmt.Sprintf("keys[%d].%s", i, kc.Source()), Message: err.Error()})
			continue
		}
		for _, w := range k.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
		}
		keys = append(keys, k)
	}
	if len(problems) > 0 {
		closeAll(keys)
		return nil, &config.Error{File: file, Problems: problems}
	}
	return keys, nil
}

// closeAll releases remote keys' sessions; a command that only read public
// keys has nothing to report about it.
func closeAll(keys []*signer.Key) {
	for _, k := range keys {
		_ = k.Close()
	}
}

func newKeysPEMCmd() *cobra.Command {
	var kf keyFlags
	var configFile, keyID string
	cmd := &cobra.Command{
		Use:   "pem (--key FILE | --config FILE --key-id ID)",
		Short: "Print the public key (SPKI PEM) to hand to a receiver's operators",
		Long: `Print the public half of a private key as an SPKI "PUBLIC KEY" PEM block.

This is what GOV.UK One Login's SSF team asks for ("the public key that
corresponds with the private key used to sign the SET"). Send it together with
the IP address setrelay sends from.

With --config and --key-id, the key is the configuration's keys[] entry with
that id, wherever it lives: for a key in an HSM or KMS the public key is read
from the token or with kms:GetPublicKey; the private key never leaves it.`,
		Example: `  setrelay keys pem --key keys/rp-2026-11.pem > rp-2026-11.pub.pem
  setrelay keys pem --config configs/govuk-kms.yaml --key-id rp-2026-11 > rp-2026-11.pub.pem`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var key *signer.Key
			switch {
			case configFile != "" && len(kf.paths) > 0:
				return usageErrorf("give either --config or --key, not both")
			case configFile != "":
				if keyID == "" {
					return usageErrorf("--key-id is required with --config: the keys[].id whose public key to print")
				}
				cfg, err := config.Load(configFile)
				if err != nil {
					return err
				}
				var kc *config.Key
				var ids []string
				for i := range cfg.Keys {
					ids = append(ids, cfg.Keys[i].ID)
					if cfg.Keys[i].ID == keyID {
						kc = &cfg.Keys[i]
					}
				}
				if kc == nil {
					return usageErrorf("%s has no key with id %q (it has: %s)", configFile, keyID, strings.Join(ids, ", "))
				}
				k, err := keysource.Open(cmd.Context(), *kc, keysource.Options{Sessions: 2})
				if err != nil {
					return keyOpenError(keyID, err)
				}
				defer k.Close()
				key = k
			default:
				if keyID != "" {
					return usageErrorf("--key-id selects a key of --config; with --key, use --kid")
				}
				keys, err := kf.load(cmd, 1)
				if err != nil {
					return err
				}
				key = keys[0]
			}
			b, err := key.PublicPEM()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	kf.register(cmd, false)
	cmd.Flags().StringVar(&configFile, "config", "", "take the key from this configuration file (with --key-id)")
	cmd.Flags().StringVar(&keyID, "key-id", "", "the keys[].id of the key to print, with --config")
	return cmd
}
