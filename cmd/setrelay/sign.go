package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/setrelay/setrelay/config"
	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/keysource"
	"github.com/setrelay/setrelay/set"
	"github.com/setrelay/setrelay/signer"
)

type signFlags struct {
	keys        keyFlags
	iss         string
	aud         []string
	audArray    bool
	subjectIn   string
	noKID       bool
	at          int64
	receiver    string
	decode      bool
	allowPriv   bool
	configFile  string
	replayOfSeq string
}

func newSignCmd() *cobra.Command {
	var sf signFlags
	cmd := &cobra.Command{
		Use:   "sign --key FILE --iss URL --aud AUD [flags] [intent.json|-]",
		Short: "Print the signed SET that an intent becomes (no queue, no network)",
		Long: `Validate one intent, build the Security Event Token a receiver would get, sign
it, and print the compact JWS. With --decode, print the JOSE header and the
claims as pretty JSON instead, to see exactly what would be sent.

The intent is read from the file argument, or from stdin when it is '-' or
absent. On an invalid intent every problem is printed on stderr, one per line
with its JSON path, and the exit status is 2.

The jti is derived from the intent id and the receiver name (--receiver), as
'setrelay run' derives it: signing the same intent for the same receiver name
gives the same jti. --at fixes iat (Unix seconds) for reproducible output.

With --config and --receiver, the issuer, audience, key, subject placement and
kid setting come from that receiver's configuration; flags given explicitly
still win.`,
		Example: `  # The SET for the bundled example, decoded:
  setrelay sign --key key.pem --iss https://rp.example.gov.uk/ \
      --aud https://inbound.ssf.account.gov.uk/ --subject-in in_event --no-kid \
      --decode cmd/setrelay/testdata/sample-intent.json

  # As a receiver of a configuration would get it:
  setrelay sign --config configs/govuk.yaml --receiver govuk --decode intent.json

  # From a pipe, compact JWS for curl:
  echo '{"id":"i-1","type":"caep.session-revoked","subject":{"format":"email","email":"a@example.com"}}' |
      setrelay sign --key key.pem --iss https://rp.example/ --aud https://rcv.example/`,
		Args: positional(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSign(cmd, args, &sf)
		},
	}
	sf.keys.register(cmd, false)
	f := cmd.Flags()
	f.StringVar(&sf.iss, "iss", "", "issuer (iss claim), e.g. https://rp.example.gov.uk/")
	f.StringArrayVar(&sf.aud, "aud", nil, "audience (aud claim); repeat for several (then aud is an array)")
	f.BoolVar(&sf.audArray, "aud-array", false, "write aud as an array even with one audience")
	f.StringVar(&sf.subjectIn, "subject-in", config.PlacementSubID, "subject placement: sub_id (SSF 1.0), in_event (RISC, GOV.UK) or both")
	f.BoolVar(&sf.noKID, "no-kid", false, "omit kid from the JWS header (GOV.UK's own transmitter sends none)")
	f.Int64Var(&sf.at, "at", 0, "iat as Unix seconds (default: now)")
	f.StringVar(&sf.receiver, "receiver", "default", "receiver name: seeds the jti, and picks the receiver with --config")
	f.BoolVar(&sf.decode, "decode", false, "print the header and claims as pretty JSON instead of the compact JWS")
	f.BoolVar(&sf.allowPriv, "allow-private-types", false, "accept event-type URIs outside the CAEP/RISC/SSF catalogue")
	f.StringVar(&sf.configFile, "config", "", "take issuer, audience, key and placement from this configuration's --receiver")
	f.StringVar(&sf.replayOfSeq, "replay-of", "", "sign as a replay of this dead letter (a new jti), as 'setrelay dlq replay' does")
	return cmd
}

func runSign(cmd *cobra.Command, args []string, sf *signFlags) error {
	var key *signer.Key
	var profile set.Profile
	withKID := !sf.noKID
	allowPriv := sf.allowPriv

	var problems []string
	if sf.configFile != "" {
		cfg, err := config.Load(sf.configFile)
		if err != nil {
			return err
		}
		r, k, err := receiverFromConfig(cfg, sf.receiver)
		if err != nil {
			return err
		}
		profile = set.Profile{Receiver: r.Name, Issuer: cfg.Issuer, Audience: r.Audience, AudienceAsArray: r.AudienceAsArray, Placement: set.Placement(r.Subject)}
		withKID = r.KID()
		// The SET is for this one receiver, so its own setting decides rather
		// than cfg.AllowsPrivateTypes (any receiver): the worker never sends a
		// receiver a private type it did not allow.
		allowPriv = allowPriv || r.AllowPrivateTypes
		if len(sf.keys.paths) == 0 {
			// The receiver's key wherever it lives (file, HSM, KMS),
			// as `setrelay run` would sign with it.
			kc := *k
			kc.InsecurePermissions = kc.InsecurePermissions || sf.keys.insecure
			rk, err := keysource.Open(cmd.Context(), kc, keysource.Options{Sessions: 2})
			if err != nil {
				return keyOpenError(k.ID, err)
			}
			defer rk.Close()
			key = rk
		}
	} else {
		profile.Receiver = sf.receiver
	}
	fl := cmd.Flags()
	if fl.Changed("iss") || profile.Issuer == "" {
		profile.Issuer = sf.iss
	}
	if fl.Changed("aud") || len(profile.Audience) == 0 {
		profile.Audience = sf.aud
	}
	if fl.Changed("aud-array") {
		profile.AudienceAsArray = sf.audArray
	}
	if fl.Changed("subject-in") || profile.Placement == "" {
		profile.Placement = set.Placement(sf.subjectIn)
	}
	if fl.Changed("no-kid") {
		withKID = !sf.noKID
	}
	if profile.Issuer == "" {
		problems = append(problems, "--iss is required: the issuer URL (iss claim)")
	} else if msg := config.IssuerProblem(profile.Issuer); msg != "" {
		problems = append(problems, "--iss "+msg)
	}
	if len(profile.Audience) == 0 {
		problems = append(problems, "--aud is required: the receiver's audience (aud claim)")
	}
	for _, a := range profile.Audience {
		if strings.TrimSpace(a) == "" {
			problems = append(problems, "--aud must not be empty")
		}
	}
	if !profile.Placement.Valid() {
		problems = append(problems, fmt.Sprintf("--subject-in %q: use sub_id, in_event or both", profile.Placement))
	}
	if sf.at < 0 {
		problems = append(problems, "--at must be Unix seconds, not negative")
	}
	if key == nil && len(sf.keys.paths) == 0 {
		problems = append(problems, "--key is required: the private key file (create one with 'setrelay keys generate')")
	}
	if len(problems) > 0 {
		return usageErrorf("%d problem%s with the flags:\n  %s", len(problems), plural(len(problems)), strings.Join(problems, "\n  "))
	}
	if key == nil {
		keys, err := sf.keys.load(cmd, 1)
		if err != nil {
			return err
		}
		key = keys[0]
	}

	src := "stdin"
	var in io.Reader = cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && len(args) == 0 && term.IsTerminal(int(f.Fd())) {
		// Without this a newcomer sees a command that seems to hang.
		fmt.Fprintln(cmd.ErrOrStderr(), "reading the intent from stdin (end with Ctrl-D), or pass a file: setrelay sign [flags] intent.json")
	}
	if len(args) == 1 && args[0] != "-" {
		src = args[0]
		f, err := os.Open(args[0])
		if err != nil {
			return usageErrorf("read intent: %w", err)
		}
		defer f.Close()
		in = f
	}
	// Read one byte past the cap so Decode reports an oversized intent.
	data, err := io.ReadAll(io.LimitReader(in, intent.MaxSize+1))
	if err != nil {
		return fmt.Errorf("read intent from %s: %w", src, err)
	}
	it, err := intent.Decode(data, intent.Options{AllowPrivateTypes: allowPriv})
	if err != nil {
		var ve *intent.ValidationError
		if errors.As(err, &ve) {
			w := cmd.ErrOrStderr()
			fmt.Fprintf(w, "%s: invalid intent (%d problem%s):\n", src, len(ve.Errors), plural(len(ve.Errors)))
			for _, p := range ve.Problems() {
				fmt.Fprintln(w, "  "+p)
			}
			return &silentError{code: exitUsage, err: err}
		}
		return fmt.Errorf("decode intent from %s: %w", src, err)
	}

	iat := time.Now()
	if sf.at > 0 {
		iat = time.Unix(sf.at, 0)
	}
	claims, err := set.Build(it, profile, set.Options{IssuedAt: iat, ReplayOf: sf.replayOfSeq})
	if err != nil {
		return usageErrorf("build SET: %w", err)
	}
	sg, err := signer.New(key)
	if err != nil {
		return fmt.Errorf("signer: %w", err)
	}
	jws, err := sg.Sign(claims, withKID)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	out := cmd.OutOrStdout()
	if !sf.decode {
		_, err = fmt.Fprintln(out, jws)
		return err
	}
	pretty, err := decodeJWS(jws)
	if err != nil {
		return err
	}
	_, err = out.Write(pretty)
	return err
}

// receiverFromConfig finds a receiver and its key in a configuration.
func receiverFromConfig(cfg *config.Config, name string) (*config.Receiver, *config.Key, error) {
	var names []string
	for i := range cfg.Receivers {
		r := &cfg.Receivers[i]
		names = append(names, r.Name)
		if r.Name != name {
			continue
		}
		for j := range cfg.Keys {
			if cfg.Keys[j].ID == r.Key {
				return r, &cfg.Keys[j], nil
			}
		}
	}
	return nil, nil, usageErrorf("--receiver %q is not in the configuration (receivers: %s)", name, strings.Join(names, ", "))
}

// decodeJWS renders a compact JWS's header and claims as indented JSON,
// keeping the claims' member order as signed.
func decodeJWS(jws string) ([]byte, error) {
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("decode: not a compact JWS (%d parts)", len(parts))
	}
	var buf bytes.Buffer
	buf.WriteString("{\n  \"header\": ")
	for i, name := range []string{"header", "claims"} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
		if i == 1 {
			buf.WriteString(",\n  \"claims\": ")
		}
		if err := json.Indent(&buf, raw, "  ", "  "); err != nil {
			return nil, fmt.Errorf("decode %s: %w", name, err)
		}
	}
	buf.WriteString("\n}\n")
	return buf.Bytes(), nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
