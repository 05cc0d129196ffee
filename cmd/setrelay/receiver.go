package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/setrelay/setrelay/receiver"
)

// receiverSecretEnv lets the client secret stay off the command line, where
// any user of the machine could read it with ps.
const receiverSecretEnv = "SETRELAY_RECEIVER_CLIENT_SECRET"

type receiverFlags struct {
	cfg        receiver.Config
	listen     string
	secretFile string
	algs       []string
	mode       string
	allowFrom  []string
	check      string // --check FILE: verify SETs offline instead of serving
	jsonOut    bool   // --json: one JSON verdict per line with --check
}

func newReceiverCmd() *cobra.Command {
	var rf receiverFlags
	cmd := &cobra.Command{
		Use:   "receiver --issuer URL --audience AUD (--jwks-url URL | --jwks-file FILE | --pem FILE) [--check FILE] [flags]",
		Short: "Run a strict development SSF receiver, with fault injection, or check SETs offline",
		Long: `Run a development Shared Signals receiver that checks what a strict real one
checks, so a setup can be tested before it talks to the real receiver.

It serves:
  POST /token    OAuth 2.0 client credentials (Basic or form client auth); the
                 same token is returned within its lifetime, as GOV.UK's does
  POST /events   RFC 8935 push: checks the request, the JWS and the claims
                 against the rules below. Answers 202, or 400 (401 for the
                 bearer token, 403 for --allow-from) with an RFC 8935 JSON
                 body {"err": ..., "description": ...} whose description
                 names each broken rule and its section
  GET  /stats    counters as JSON: accepted, duplicates, violations and
                 warnings by rule, rejections by err code, token requests
  GET  /healthz

With --check FILE it serves nothing: it reads compact SETs from FILE (one per
line; "-" is standard input; blank lines and lines starting with # are
skipped), runs the same checks (all but the HTTP-level ones) and prints one
verdict per SET. A jti seen twice is checked as a retransmission would be.
Exit status: 0 when every SET was accepted (warnings do not count unless
--strict), 1 when any was rejected, 2 for bad flags or an unreadable file.

Rules. MUST rules are rejections; SHOULD rules and the CAEP 1.0, RISC 1.0 and
SSF 1.0 event definitions are warnings: the SET is accepted, the warning
counted in /stats and logged once per kind with an example jti. --strict makes
every warning a rejection, 400 invalid_request.

` + rulesHelp() + `
Faults for testing retries and dead letters are deterministic for a given
--seed. When it stops (Ctrl-C) it prints the final /stats on stdout.

The client secret can come from --client-secret, --client-secret-file or the
` + receiverSecretEnv + ` environment variable.`,
		Example: `  # Verify against a running setrelay's published keys:
  setrelay receiver --issuer https://rp.example/ --audience https://rcv.example/ \
      --client-id demo --client-secret demo-secret --jwks-url http://127.0.0.1:9464/jwks.json

  # GOV.UK-like: subject in the event, RS256 only, PEM key, flaky:
  setrelay receiver --issuer https://rp.example/ --audience https://inbound.ssf.account.gov.uk/ \
      --client-id demo --client-secret demo-secret --scope messages/write \
      --pem rp.pub.pem --alg RS256 --mode in_event --fail-rate 0.2 --rate-429 0.05 --retry-after 2s

  # Reject SETs whose txn starts with "bad-" (to see dead letters), down for 30s after 1m:
  setrelay receiver --issuer https://rp.example/ --audience aud --no-auth --jwks-file jwks.json \
      --reject-txn-prefix bad- --down-after 1m --down-for 30s --quiet

  # Check offline what a transmitter produced, strictly, one verdict per line:
  setrelay receiver --check sets.txt --strict --mode sub_id \
      --issuer https://rp.example/ --audience https://rcv.example/ --jwks-file jwks.json`,
		Args: positional(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runReceiver(cmd, &rf)
		},
	}
	f := cmd.Flags()
	c := &rf.cfg
	f.StringVar(&rf.listen, "listen", "127.0.0.1:8080", "address to serve on")
	f.StringVar(&c.ClientID, "client-id", "", "OAuth client id accepted by /token")
	f.StringVar(&c.ClientSecret, "client-secret", "", "OAuth client secret (prefer --client-secret-file or $"+receiverSecretEnv+")")
	f.StringVar(&rf.secretFile, "client-secret-file", "", "file holding the OAuth client secret")
	f.StringArrayVar(&c.Scopes, "scope", nil, "scope a client may ask for, e.g. messages/write (repeat for several)")
	f.DurationVar(&c.TokenLifetime, "token-lifetime", time.Hour, "lifetime of issued tokens")
	f.BoolVar(&c.NoAuth, "no-auth", false, "do not require a bearer token on /events")
	f.StringVar(&c.Issuer, "issuer", "", "iss every SET must carry (required)")
	f.StringVar(&c.Audience, "audience", "", "aud every SET must carry or contain (required)")
	f.StringVar(&c.JWKSFile, "jwks-file", "", "verify signatures with this JWKS (or JWK) file")
	f.StringVar(&c.JWKSURL, "jwks-url", "", "verify signatures with this JWKS URL, e.g. setrelay's http://127.0.0.1:9464/jwks.json")
	f.StringVar(&c.PEMFile, "pem", "", "verify signatures with this PEM public key or certificate file")
	f.StringArrayVar(&rf.algs, "alg", nil, "allowed JWS algorithm (repeat; default RS256, PS256, ES256, ES384, EdDSA)")
	f.StringVar(&rf.mode, "mode", string(receiver.SubjectEither), "where the subject must be: sub_id (SSF 1.0), in_event (RISC, GOV.UK) or either")
	f.DurationVar(&c.ClockSkew, "clock-skew", time.Minute, "how far in the future iat may be")
	// --require-accept is kept so that existing scripts still run; the check
	// it switched on is now always made.
	f.Bool("require-accept", false, "no effect: a push without Accept is always rejected (RFC 8935 §2.1)")
	_ = f.MarkDeprecated("require-accept", "a push without an Accept header is now always rejected (RFC 8935 §2.1 says MUST)")
	f.Int64Var(&c.MaxBodyBytes, "max-body", 64<<10, "largest request body (one SET) accepted, in bytes")
	f.BoolVar(&c.Strict, "strict", false, "turn every warning (SHOULD rules, event catalogue) into a rejection, 400 invalid_request")
	f.StringArrayVar(&c.SubjectFormats, "subject-format", nil, "a proprietary subject identifier format agreed with the transmitter (SSF 1.0 §3.4; repeat for several)")
	f.StringVar(&rf.check, "check", "", `check the compact SETs in this file ("-" for stdin) offline, print one verdict per SET, and exit`)
	f.BoolVar(&rf.jsonOut, "json", false, "with --check: print each verdict as one JSON object per line")
	f.StringArrayVar(&rf.allowFrom, "allow-from", nil, "source address or CIDR allowed to push (repeat); others get 403")
	f.BoolVar(&c.Quiet, "quiet", false, "do not log a line per SET")
	f.Uint64Var(&c.Seed, "seed", 1, "seed of the fault generator: equal seeds give equal faults")
	f.Float64Var(&c.FailRate, "fail-rate", 0, "probability (0..1) of answering 500")
	f.Float64Var(&c.Rate429, "rate-429", 0, "probability (0..1) of answering 429 with --retry-after")
	f.DurationVar(&c.RetryAfter, "retry-after", time.Second, "Retry-After sent with injected 429s")
	f.DurationVar(&c.Latency, "latency", 0, "delay added to every /events request")
	f.Float64Var(&c.HangRate, "hang-rate", 0, "probability (0..1) of holding a request until the client gives up or --max-hang")
	f.DurationVar(&c.MaxHang, "max-hang", 30*time.Second, "longest hang, then 503")
	f.IntVar(&c.RevokeTokenEvery, "revoke-token-every", 0, "revoke the token after every N accepted SETs (the next push gets 401)")
	f.StringVar(&c.RejectTxnPrefix, "reject-txn-prefix", "", "answer 400 invalid_request to SETs whose txn starts with this")
	f.DurationVar(&c.DownAfter, "down-after", 0, "start an outage (503 to everything) this long after start")
	f.DurationVar(&c.DownFor, "down-for", 0, "length of the outage; 0 means no outage")
	return cmd
}

func runReceiver(cmd *cobra.Command, rf *receiverFlags) error {
	c := rf.cfg
	var problems []string
	switch {
	case rf.secretFile != "" && c.ClientSecret != "":
		problems = append(problems, "give --client-secret or --client-secret-file, not both")
	case rf.secretFile != "":
		b, err := os.ReadFile(rf.secretFile)
		if err != nil {
			problems = append(problems, fmt.Sprintf("--client-secret-file: %v", err))
		}
		c.ClientSecret = strings.TrimRight(string(b), "\r\n")
	case c.ClientSecret == "":
		c.ClientSecret = os.Getenv(receiverSecretEnv)
	}
	for _, a := range rf.algs {
		c.Algorithms = append(c.Algorithms, jose.SignatureAlgorithm(a))
	}
	switch m := receiver.SubjectMode(rf.mode); m {
	case receiver.SubjectSubID, receiver.SubjectInEvent, receiver.SubjectEither:
		c.SubjectMode = m
	default:
		problems = append(problems, fmt.Sprintf("--mode %q: use sub_id, in_event or either", rf.mode))
	}
	for _, s := range rf.allowFrom {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				problems = append(problems, fmt.Sprintf("--allow-from %q: not an address or CIDR prefix", s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		c.AllowFrom = append(c.AllowFrom, p)
	}
	if rf.jsonOut && rf.check == "" {
		problems = append(problems, "--json only applies with --check")
	}
	if len(problems) > 0 {
		return usageErrorf("%d problem%s with the flags:\n  %s", len(problems), plural(len(problems)), strings.Join(problems, "\n  "))
	}
	if rf.check != "" {
		return runReceiverCheck(cmd, c, rf.check, rf.jsonOut)
	}
	log, err := consoleLogger(cmd)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	rcv, err := receiver.New(c, log.Named("receiver"))
	if err != nil {
		return usageErrorf("%w", err)
	}
	ln, err := net.Listen("tcp", rf.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", rf.listen, err)
	}
	srv := &http.Server{Handler: rcv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	log.Info("receiver listening", zap.String("events", base+"/events"), zap.String("token", base+"/token"), zap.String("stats", base+"/stats"))

	select {
	case err = <-served:
	case <-cmd.Context().Done():
		// End injected hangs first, or Shutdown would wait for them.
		rcv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = srv.Shutdown(ctx)
		cancel()
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) && err == nil {
			err = serr
		}
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("receiver: %w", err)
	}
	stats, err := json.MarshalIndent(rcv.Stats(), "", "  ")
	if err != nil {
		return fmt.Errorf("receiver stats: %w", err)
	}
	_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", stats)
	return err
}

// rulesHelp lists the receiver's rules for --help, from the receiver's own
// table, so the help cannot drift from what is checked.
func rulesHelp() string {
	var b strings.Builder
	for _, sev := range []receiver.Severity{receiver.Reject, receiver.Warn} {
		if sev == receiver.Reject {
			b.WriteString("Rejections (rule, where it is stated: what it says):\n")
		} else {
			b.WriteString("Warnings:\n")
		}
		for _, r := range receiver.Rules() {
			if r.Severity == sev {
				fmt.Fprintf(&b, "  %-22s %s: %s\n", r.Kind, r.Section, r.Summary)
			}
		}
	}
	return b.String()
}
