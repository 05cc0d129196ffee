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
}

func newReceiverCmd() *cobra.Command {
	var rf receiverFlags
	cmd := &cobra.Command{
		Use:   "receiver --issuer URL --audience AUD (--jwks-url URL | --jwks-file FILE | --pem FILE) [flags]",
		Short: "Run a strict development SSF receiver, with fault injection",
		Long: `Run a development Shared Signals receiver that checks what a strict real one
checks, so a setup can be tested before it talks to the real receiver.

It serves:
  POST /token    OAuth 2.0 client credentials (Basic or form client auth); the
                 same token is returned within its lifetime, as GOV.UK's does
  POST /events   RFC 8935 push: verifies method, Content-Type, Accept, the
                 bearer token, the signature (JWKS file or URL, or PEM), typ,
                 alg, iss, aud, iat (seconds, not in the future), jti, events,
                 subject placement, no sub/exp; flags a duplicate jti with
                 different claims. Answers 202, or 400 with an RFC 8935 err
  GET  /stats    counters as JSON: accepted, duplicates, violations by kind,
                 rejections by code, token requests
  GET  /healthz

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
      --reject-txn-prefix bad- --down-after 1m --down-for 30s --quiet`,
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
	f.BoolVar(&c.RequireAccept, "require-accept", false, "reject pushes without an Accept header (default: only count them)")
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
	if len(problems) > 0 {
		return usageErrorf("%d problem%s with the flags:\n  %s", len(problems), plural(len(problems)), strings.Join(problems, "\n  "))
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
