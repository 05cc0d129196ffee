package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/setrelay/setrelay/intent"
	"github.com/setrelay/setrelay/queue"
	"github.com/setrelay/setrelay/secret"
)

// algorithms setrelay signs with; the signer package enforces the same list
// when the key is loaded, this check only reports it early with a path.
var algorithms = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}

// receiverName restricts names to what is safe in a NATS subject token and a
// consumer name, so that two receivers can never map to the same consumer.
var receiverName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks a Config assembled in code (Load validates on its own)
// and returns an *Error listing every problem, or nil. Start from Defaults
// and call FillDefaults first: Validate does not invent values.
func (c *Config) Validate() error { return c.validate("") }

func (c *Config) validate(file string) error {
	var p problems
	c.validateIssuer(&p)
	keyIDs := c.validateKeys(&p)
	c.validateNATS(&p)
	if c.Worker.Concurrency < 1 {
		p.add("worker.concurrency", "must be at least 1 (got %d)", c.Worker.Concurrency)
	}
	if c.Worker.GracePeriod < 0 {
		p.add("worker.grace_period", "must not be negative")
	}
	if c.Worker.FetchWait < MinFetchWait || c.Worker.FetchWait > MaxFetchWait {
		p.add("worker.fetch_wait", "must be between %s and %s (got %s)", MinFetchWait, MaxFetchWait, c.Worker.FetchWait)
	}
	checkHostPort(&p, "ops.listen", c.Ops.Listen)
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		p.add("log.level", "must be debug, info, warn or error (got %q)", c.Log.Level)
	}
	if !slices.Contains([]string{"json", "console"}, c.Log.Format) {
		p.add("log.format", "must be json or console (got %q)", c.Log.Format)
	}
	if len(c.Receivers) == 0 && !c.SSF.Enabled {
		p.add("receivers", "at least one receiver is required (or ssf.enabled: true, for receivers that create their own streams)")
	}
	c.validateSSF(&p, keyIDs)
	names := map[string]int{}
	for i := range c.Receivers {
		r := c.Receivers[i]
		if c.credentialsUnread {
			// QueueOnly left the credentials as written: there is
			// nothing to check in them, and they are never used.
			r.Auth = Auth{}
			if strings.Contains(r.Endpoint, "${") {
				// Nor an endpoint left as a ${NAME} reference (this
				// is a copy: the configuration keeps it as written).
				r.Endpoint = "https://endpoint-not-expanded.invalid/"
			}
		}
		r.validate(&p, fmt.Sprintf("receivers[%d]", i), keyIDs, names, i)
	}
	return p.err(file)
}

func (c *Config) validateIssuer(p *problems) {
	if c.Issuer == "" {
		p.add("issuer", "required: the transmitter's issuer URL, the iss claim of every SET (for example https://rp.example.gov.uk/)")
		return
	}
	if msg := IssuerProblem(c.Issuer); msg != "" {
		p.add("issuer", "%s", msg)
	}
}

// IssuerProblem says what is wrong with a non-empty issuer (the iss claim),
// or returns "". It is the one issuer rule, shared by the configuration and
// 'setrelay sign --iss', so a SET signed by hand is one the relay would
// also sign.
func IssuerProblem(iss string) string {
	u, err := url.Parse(iss)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return fmt.Sprintf("must be an absolute URL such as https://rp.example.gov.uk/ (got %q)", iss)
	}
	return ""
}

// validateKeys returns the set of key ids for the receivers' key references.
func (c *Config) validateKeys(p *problems) map[string]bool {
	ids := map[string]bool{}
	if len(c.Keys) == 0 {
		p.add("keys", "at least one signing key is required; create one with `setrelay keys generate --alg RS256 --out key.pem`")
	}
	for i, k := range c.Keys {
		path := fmt.Sprintf("keys[%d]", i)
		switch {
		case k.ID == "":
			p.add(path+".id", "required: the key id (kid) receivers use to pick this key")
		case ids[k.ID]:
			p.add(path+".id", "duplicate key id %q; each key needs its own id", k.ID)
		default:
			ids[k.ID] = true
		}
		k.validateSource(p, path)
		// A remote key's algorithm may be left out: it defaults from the
		// key type, read from the device at start-up.
		remoteDefault := k.Source() != "file" && k.Alg == ""
		if !remoteDefault && !slices.Contains(algorithms, k.Alg) {
			p.add(path+".alg", "must be one of %s (got %q)", strings.Join(algorithms, ", "), k.Alg)
		}
	}
	return ids
}

func (c *Config) validateNATS(p *problems) {
	n := c.NATS
	if n.URL != "" {
		for _, s := range strings.Split(n.URL, ",") {
			u, err := url.Parse(strings.TrimSpace(s))
			if err != nil || u.Host == "" || !slices.Contains([]string{"nats", "tls", "ws", "wss"}, u.Scheme) {
				p.add("nats.url", "must be nats://, tls://, ws:// or wss:// URLs separated by commas (got %q); leave it empty for the embedded server", secret.URL(s))
			}
		}
	} else {
		checkHostPort(p, "nats.listen", n.Listen)
		if n.StoreDir == "" {
			p.add("nats.store_dir", "required for the embedded server: the directory of its JetStream file store")
		}
		if n.Replicas > 1 {
			p.add("nats.replicas", "the embedded server is a single node: use 1, or set nats.url to a cluster")
		}
	}
	if n.Replicas < 1 || n.Replicas > 5 {
		p.add("nats.replicas", "must be between 1 and 5 (got %d); use 3 in a cluster", n.Replicas)
	}
	if n.MaxAckPending < 1 {
		p.add("nats.max_ack_pending", "must be at least 1 (got %d)", n.MaxAckPending)
	}
	if n.AckWait < time.Second {
		p.add("nats.ack_wait", "must be at least 1s (got %s)", n.AckWait)
	}
	if n.DuplicateWindow <= 0 || n.DuplicateWindow > MaxDuplicateWindow {
		p.add("nats.duplicate_window", "must be more than 0s and at most %s (got %s): the server keeps every intent id of the window in memory", MaxDuplicateWindow, n.DuplicateWindow)
	}
	methods := 0
	for _, set := range []bool{n.User != "" || n.Password != "", n.Token != "", n.Creds != "", n.NKey != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		p.add("nats", "set one authentication method: user/password, token, creds or nkey")
	}
	if n.User != "" && n.Password == "" {
		p.add("nats.password", "required with nats.user")
	}
	if n.Password != "" && n.User == "" {
		p.add("nats.user", "required with nats.password")
	}
	checkTLS(p, "nats.tls", n.TLS)
}

func (r *Receiver) validate(p *problems, path string, keyIDs map[string]bool, names map[string]int, i int) {
	switch {
	case r.Name == "":
		p.add(path+".name", "required: a short name such as govuk, used in intents, metrics and logs")
	case !receiverName.MatchString(r.Name):
		p.add(path+".name", "use 1 to 64 letters, digits, '-' or '_' (got %q): it becomes part of NATS subject and consumer names", r.Name)
	default:
		if j, dup := names[r.Name]; dup {
			p.add(path+".name", "duplicate receiver name %q (also receivers[%d])", r.Name, j)
		} else {
			names[r.Name] = i
		}
	}
	checkURL(p, path+".endpoint", r.Endpoint, r.InsecureHTTP, "the receiver's RFC 8935 push URL")

	if len(r.Audience) == 0 {
		p.add(path+".audience", "required: the aud claim the receiver expects")
	}
	for j, a := range r.Audience {
		if strings.TrimSpace(a) == "" {
			p.add(fmt.Sprintf("%s.audience[%d]", path, j), "must not be empty")
		}
	}
	if len(r.Audience) > 1 && !r.AudienceAsArray {
		p.add(path+".audience_as_array", "must be true when more than one audience is listed")
	}

	switch {
	case r.Key == "":
		p.add(path+".key", "required: the id of the signing key (one of keys[].id)")
	case !keyIDs[r.Key]:
		p.add(path+".key", "no key with id %q; it must name one of keys[].id", r.Key)
	}
	if !slices.Contains([]string{PlacementSubID, PlacementInEvent, PlacementBoth}, r.Subject) {
		p.add(path+".subject", "must be sub_id (SSF 1.0), in_event (RISC, GOV.UK) or both (got %q)", r.Subject)
	}
	seen := map[string]int{}
	for j, e := range r.Events {
		ep := fmt.Sprintf("%s.events[%d]", path, j)
		uri, known := intent.ResolveType(e)
		switch {
		case uri == "":
			p.add(ep, "unknown event type %q: use an alias such as risc.account-disabled or an absolute URI (`setrelay schema` lists the catalogue)", e)
			continue
		case !known && !r.AllowPrivateTypes:
			p.add(ep, "%q is a private event type; set allow_private_types: true on this receiver to send it", e)
		}
		if k, dup := seen[uri]; dup {
			p.add(ep, "duplicate of events[%d] (both are %s)", k, uri)
		} else {
			seen[uri] = j
		}
	}
	r.Auth.validate(p, path+".auth", r.InsecureHTTP)

	positive := func(field string, d time.Duration) {
		if d <= 0 {
			p.add(path+"."+field, "must be a positive duration such as 10s (got %s)", d)
		}
	}
	positive("timeout", r.Timeout)
	positive("connect_timeout", r.ConnectTimeout)
	if r.ConnectTimeout > r.Timeout && r.Timeout > 0 {
		p.add(path+".connect_timeout", "must not exceed timeout (%s > %s)", r.ConnectTimeout, r.Timeout)
	}
	positive("max_retry_after", r.MaxRetryAfter)
	if r.MaxConns < 0 {
		p.add(path+".max_conns", "must not be negative")
	}
	switch r.Ordering {
	case "", OrderingNone:
		if r.Partitions != 0 || r.OnDeadLetter != "" {
			p.add(path+".ordering", "partitions and on_dead_letter apply only with ordering: subject")
		}
	case OrderingSubject:
		if r.Partitions != 0 {
			if err := queue.ValidPartitions(r.Partitions); err != nil {
				p.add(path+".partitions", "%v", err)
			}
		}
		if r.OnDeadLetter != "" && r.OnDeadLetter != DeadLetterContinue && r.OnDeadLetter != DeadLetterHold {
			p.add(path+".on_dead_letter", "must be continue (default) or hold (got %q)", r.OnDeadLetter)
		}
	default:
		p.add(path+".ordering", "must be none (default) or subject (got %q)", r.Ordering)
	}
	if r.RateLimit < 0 {
		p.add(path+".rate_limit", "must be 0 (unlimited) or a number of SETs per second (got %s)", strconv.FormatFloat(r.RateLimit, 'g', -1, 64))
	}
	if r.MaxInFlight < 0 {
		p.add(path+".max_in_flight", "must be 0 (unlimited) or the most concurrent pushes to this receiver across the fleet (got %d)", r.MaxInFlight)
	}
	positive("retry.initial", r.Retry.Initial)
	positive("retry.max", r.Retry.Max)
	if r.Retry.Max < r.Retry.Initial {
		p.add(path+".retry.max", "must be at least retry.initial (%s < %s)", r.Retry.Max, r.Retry.Initial)
	}
	if r.Retry.MaxAttempts < 1 {
		p.add(path+".retry.max_attempts", "must be at least 1 (got %d)", r.Retry.MaxAttempts)
	}
	if r.Retry.MaxAttempts >= queue.DefaultMaxDeliver {
		// The consumer's MaxDeliver is a safety net below which the worker
		// must reach its own limit; at or above it, intents would be
		// dead-lettered as max_deliveries, not after max_attempts.
		p.add(path+".retry.max_attempts", "must be below the queue's delivery limit %d (got %d): beyond it intents are dead-lettered as max_deliveries; use retry.max_age for long retrying",
			queue.DefaultMaxDeliver, r.Retry.MaxAttempts)
	}
	positive("retry.max_age", r.Retry.MaxAge)
	if r.Pause.Threshold < 1 && r.Pause.Threshold != -1 {
		p.add(path+".pause.threshold", "must be at least 1 consecutive failure, or -1 to never pause (got %d)", r.Pause.Threshold)
	} else if r.Pause.Threshold >= r.Retry.MaxAttempts && r.Retry.MaxAttempts > 0 {
		// A receiver that is down for a quiet feed fails one intent's
		// attempts in a row: unless the pause comes first, that intent is
		// dead-lettered as attempts_exhausted instead of waiting out the
		// outage, and pauses are what keep outages from burning attempts.
		p.add(path+".pause.threshold", "must be below retry.max_attempts (%d >= %d), or an outage dead-letters intents before the receiver is paused; use -1 to never pause",
			r.Pause.Threshold, r.Retry.MaxAttempts)
	}
	positive("pause.initial", r.Pause.Initial)
	positive("pause.max", r.Pause.Max)
	if r.Pause.Max < r.Pause.Initial {
		p.add(path+".pause.max", "must be at least pause.initial (%s < %s)", r.Pause.Max, r.Pause.Initial)
	}
	if r.Pause.ProbeInterval < 0 {
		p.add(path+".pause.probe_interval", "must be a positive duration such as 10s (got %s)", r.Pause.ProbeInterval)
	} else if r.Pause.ProbeInterval > r.Pause.Initial && r.Pause.Initial > 0 {
		p.add(path+".pause.probe_interval", "must be at most pause.initial (%s > %s): a recovery would otherwise wait for the pause to end", r.Pause.ProbeInterval, r.Pause.Initial)
	}
	checkTLS(p, path+".tls", r.TLS)
}

func (a Auth) validate(p *problems, path string, insecure bool) {
	header := a.AuthorizationHeader != ""
	if a.OAuth() && header {
		p.add(path, "set either token_url/client_id/client_secret (OAuth client credentials) or authorization_header, not both")
		return
	}
	if header && strings.ContainsAny(a.AuthorizationHeader.Reveal(), "\r\n") {
		p.add(path+".authorization_header", "must be a single line")
	}
	if !a.OAuth() {
		if len(a.Scopes) > 0 {
			p.add(path+".scopes", "scopes need token_url, client_id and client_secret")
		}
		if a.AuthStyle != "" {
			p.add(path+".auth_style", "auth_style needs token_url, client_id and client_secret")
		}
		return
	}
	checkURL(p, path+".token_url", a.TokenURL, insecure, "the receiver's OAuth 2.0 token endpoint")
	if a.ClientID == "" {
		p.add(path+".client_id", "required with token_url: the client id the receiver's operator issued")
	}
	if a.ClientSecret == "" {
		p.add(path+".client_secret", "required with token_url: set client_secret (for example ${CLIENT_SECRET}) or client_secret_file")
	}
	if a.AuthStyle != AuthStyleBasic && a.AuthStyle != AuthStyleForm {
		p.add(path+".auth_style", "must be basic (HTTP Basic, the default) or form (got %q)", a.AuthStyle)
	}
	for j, s := range a.Scopes {
		if !scopeToken(s) {
			p.add(fmt.Sprintf("%s.scopes[%d]", path, j), "must be one scope token: printable ASCII without spaces, quotes or backslashes, as RFC 6749 3.3 defines it (got %q)", s)
		}
	}
}

// scopeToken reports whether s is an RFC 6749 section 3.3 scope-token:
// 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII without space, a double
// quote or a backslash. Anything else cannot be sent in the space-delimited scope parameter
// as one scope.
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// checkURL requires an absolute https URL, or http when insecure is set.
func checkURL(p *problems, path, raw string, insecure bool, what string) {
	if raw == "" {
		p.add(path, "required: %s", what)
		return
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		p.add(path, "must be an absolute https:// URL (got %q)", secret.URL(raw))
		return
	}
	if u.User != nil {
		p.add(path, "must not carry credentials in the URL; use auth instead")
	}
	if param := secret.CredentialInQuery(raw); param != "" {
		p.add(path, "carries %s in its query string (%s), where logs, proxies and error messages would show it; %s", param, secret.URL(raw), credentialAdvice(path, param))
	}
	if u.Scheme == "http" && !insecure {
		p.add(path, "uses http://, which sends tokens and SETs in clear; use https://, or set insecure_http: true for local testing")
	}
}

func checkHostPort(p *problems, path, addr string) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.add(path, "must be host:port such as 127.0.0.1:9464 (got %q)", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < -1 || n > 65535 {
		p.add(path, "port must be a number from 0 to 65535 (got %q)", port)
	}
}

func checkTLS(p *problems, path string, t TLS) {
	if (t.Cert == "") != (t.Key == "") {
		p.add(path, "cert and key go together: set both for a client certificate, or neither")
	}
}

// credentialAdvice says where a credential found in a URL's query belongs
// instead.
func credentialAdvice(path, param string) string {
	if strings.HasSuffix(path, ".token_url") {
		if param == "client_secret" {
			return "remove it from the URL and set client_secret (or client_secret_file); setrelay sends it in the Authorization header (auth_style: basic) or the request body (auth_style: form), as RFC 6749 section 2.3.1 says"
		}
		return "remove it from the URL; a token endpoint authenticates setrelay with client_id and client_secret"
	}
	return "remove it from the URL and authenticate with auth (token_url with client_id and client_secret, or authorization_header)"
}
