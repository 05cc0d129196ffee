package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"github.com/setrelay/setrelay/internal/suggest"
	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds the configuration file and each secret file: both are
// small, and a misconfigured path pointing at a large file should fail
// quickly rather than be read into memory.
const maxFileSize = 1 << 20

// Option changes how Load and Parse read a configuration.
type Option func(*loadOptions)

type loadOptions struct {
	queueOnly bool
}

// QueueOnly loads the configuration for a program that only talks to the
// queue (publish, backfill, dlq, status): the receivers' credentials
// (everything under receivers[].auth) are left as written, with their
// ${NAME} references not expanded and their *_file not read, so a producer
// needs neither the receivers' client secrets in its environment nor their
// files; so is a receiver's endpoint written as a ${NAME} reference
// (configs/govuk.yaml does), since nothing but the relay pushes. Such a Config must never be used to deliver: its receivers'
// credentials are placeholders.
func QueueOnly() Option { return func(o *loadOptions) { o.queueOnly = true } }

// Load reads, expands, completes and validates the configuration at path.
// Every problem found is returned at once as an *Error. The environment
// variable NATS_URL, when set, overrides nats.url.
func Load(path string, opts ...Option) (*Config, error) {
	data, err := readBounded(path)
	if err != nil {
		// A configuration that cannot be read is an input mistake like
		// any other in it (the CLI exits 2), and the cause stays
		// reachable for errors.Is(err, fs.ErrNotExist).
		msg := "cannot read the file: " + err.Error()
		if errors.Is(err, fs.ErrNotExist) {
			msg = "the file does not exist; check the path, or start from one of the commented examples in configs/"
		}
		return nil, &Error{File: path, Problems: []Problem{{Message: msg}}, cause: err}
	}
	cfg, err := parse(data, path, os.LookupEnv, opts...)
	if err != nil {
		return nil, err
	}
	cfg.Source = path
	return cfg, nil
}

// Parse is Load for a configuration already in memory; file names the
// source in errors. lookup resolves environment variables (os.LookupEnv in
// production; a map in tests).
func Parse(data []byte, file string, lookup func(string) (string, bool), opts ...Option) (*Config, error) {
	return parse(data, file, lookup, opts...)
}

func parse(data []byte, file string, lookup func(string) (string, bool), opts ...Option) (*Config, error) {
	var o loadOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg := Defaults()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	// KnownFields turns a misspelt key into an error naming its line
	// instead of a silently ignored setting.
	dec.KnownFields(true)
	var decoded []Problem // unknown keys and mistyped values
	if err := dec.Decode(cfg); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Problems: []Problem{{Message: "the file is empty; see configs/ for commented examples"}}}
		}
		// An unknown key or a value of the wrong type is a *yaml.TypeError,
		// after which yaml has still decoded everything else: keep going,
		// so that the other problems of the file are reported in the same
		// run. A syntax error leaves nothing trustworthy to check.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, &Error{File: file, Problems: yamlProblems(err)}
		}
		decoded = yamlProblems(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &Error{File: file, Problems: []Problem{{Message: "the file holds more than one YAML document; keep one"}}}
	}

	p := problems{list: decoded}
	expandEnv(cfg, lookup, &p, o.skip)
	if url, ok := lookup("NATS_URL"); ok && url != "" {
		cfg.NATS.URL = url
	}
	if o.queueOnly {
		// The receivers' credentials stay as written: validate does not
		// look at them, and nothing may use them.
		cfg.credentialsUnread = true
	} else {
		readSecretFiles(cfg, &p)
	}
	if len(p.list) > len(decoded) {
		// An unset variable or unreadable secret file leaves a value
		// half-filled; validating it would report made-up problems.
		return nil, p.err(file)
	}
	cfg.FillDefaults()
	if err := cfg.validate(file); err != nil {
		var ve *Error
		if errors.As(err, &ve) {
			ve.Problems = append(decoded, ve.Problems...)
		}
		return nil, err
	}
	if err := p.err(file); err != nil {
		return nil, err
	}
	return cfg, nil
}

// yaml phrases problems in terms of Go types; these rewrite them in terms of
// the file an operator is editing.
var rewrites = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`field (\S+) not found in type \S+`), `unknown key "$1"`},
	{regexp.MustCompile("cannot unmarshal !!\\w+ (`[^`]*`) into time\\.Duration"), "$1 is not a duration: write one such as 500ms, 10s, 5m or 72h"},
	{regexp.MustCompile("cannot unmarshal !!\\w+ (`[^`]*`) into u?int\\d*"), "$1 is not a whole number"},
	{regexp.MustCompile("cannot unmarshal !!\\w+ (`[^`]*`) into float64"), "$1 is not a number"},
	{regexp.MustCompile("cannot unmarshal !!\\w+ (`[^`]*`) into \\*?bool"), "$1 is not true or false"},
	{regexp.MustCompile(`cannot unmarshal !!(map|seq|str|int|float|bool)( .*)? into \[\](config\.)?\w+`), "expected a list here, found a $1"},
	{regexp.MustCompile(`cannot unmarshal !!(map|seq|str|int|float|bool)( .*)? into config\.\w+`), "expected a mapping (key: value lines) here, found a $1"},
}

// yamlProblems turns a yaml decoding error into Problems, one per line yaml
// reported, with messages phrased for an operator.
func yamlProblems(err error) []Problem {
	var te *yaml.TypeError
	var lines []string
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]Problem, 0, len(lines))
	for _, l := range lines {
		hint := suggestKey(l)
		for _, r := range rewrites {
			l = r.re.ReplaceAllString(l, r.with)
		}
		out = append(out, Problem{Message: l + hint})
	}
	return out
}

// sections maps the Go type names yaml reports to the types, so an unknown
// key can be compared with the keys that section does have.
var sections = map[string]reflect.Type{
	"config.Config":   reflect.TypeFor[Config](),
	"config.Key":      reflect.TypeFor[Key](),
	"config.NATS":     reflect.TypeFor[NATS](),
	"config.TLS":      reflect.TypeFor[TLS](),
	"config.Worker":   reflect.TypeFor[Worker](),
	"config.Ops":      reflect.TypeFor[Ops](),
	"config.Log":      reflect.TypeFor[Log](),
	"config.Receiver": reflect.TypeFor[Receiver](),
	"config.Auth":     reflect.TypeFor[Auth](),
	"config.Retry":    reflect.TypeFor[Retry](),
	"config.Pause":    reflect.TypeFor[Pause](),
}

var unknownKey = regexp.MustCompile(`field (\S+) not found in type (\S+)`)

// suggestKey returns "; did you mean X?" for an unknown key close to a
// real one of the same section (endpont → endpoint), a general hint for
// another unknown key, and "" for other messages.
func suggestKey(msg string) string {
	m := unknownKey.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	const generic = " (check its spelling and indentation against configs/*.yaml)"
	t, ok := sections[m[2]]
	if !ok {
		return generic
	}
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
	}
	best, ok := suggest.Closest(m[1], names)
	if !ok {
		return generic
	}
	return "; did you mean " + strconv.Quote(best) + "?"
}

// readSecretFiles loads client_secret_file and authorization_header_file
// into their secrets. One trailing newline (what editors and `echo` add) is
// trimmed; the content is never echoed in an error.
func readSecretFiles(cfg *Config, p *problems) {
	for i := range cfg.Receivers {
		a := &cfg.Receivers[i].Auth
		base := fmt.Sprintf("receivers[%d].auth.", i)
		if a.ClientSecretFile != "" {
			if a.ClientSecret != "" {
				p.add(base+"client_secret_file", "set either client_secret or client_secret_file, not both")
			} else if s, err := readSecret(a.ClientSecretFile); err != nil {
				p.add(base+"client_secret_file", "%v", err)
			} else {
				a.ClientSecret = Secret(s)
			}
		}
		if a.AuthorizationHeaderFile != "" {
			if a.AuthorizationHeader != "" {
				p.add(base+"authorization_header_file", "set either authorization_header or authorization_header_file, not both")
			} else if s, err := readSecret(a.AuthorizationHeaderFile); err != nil {
				p.add(base+"authorization_header_file", "%v", err)
			} else {
				a.AuthorizationHeader = Secret(s)
			}
		}
	}
}

// skip reports whether expandEnv leaves the value at path as written: for
// QueueOnly, the receivers' credentials and endpoints, which queue tools
// never use and whose variables live in the relay's environment.
func (o loadOptions) skip(path string) bool {
	return o.queueOnly && (receiverAuthPath.MatchString(path) || receiverEndpointPath.MatchString(path))
}

var (
	receiverAuthPath     = regexp.MustCompile(`^receivers\[\d+\]\.auth\.`)
	receiverEndpointPath = regexp.MustCompile(`^receivers\[\d+\]\.endpoint$`)
)

// ReloadSecrets returns r with client_secret_file and
// authorization_header_file read again, so a relay can pick up a fixed
// secret without a restart (a blocked receiver's probe does). Secrets given
// inline are kept.
func (r Receiver) ReloadSecrets() (Receiver, error) {
	if r.Auth.ClientSecretFile != "" {
		s, err := readSecret(r.Auth.ClientSecretFile)
		if err != nil {
			return r, fmt.Errorf("receivers %q: auth.client_secret_file: %w", r.Name, err)
		}
		r.Auth.ClientSecret = Secret(s)
	}
	if r.Auth.AuthorizationHeaderFile != "" {
		s, err := readSecret(r.Auth.AuthorizationHeaderFile)
		if err != nil {
			return r, fmt.Errorf("receivers %q: auth.authorization_header_file: %w", r.Name, err)
		}
		r.Auth.AuthorizationHeader = Secret(s)
	}
	return r, nil
}

func readSecret(path string) (string, error) {
	data, err := readBounded(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// Opening a directory succeeds; reading it fails with an error that
	// names the path twice ("read X: read X: is a directory"). A directory
	// is a common slip (a mounted folder, a path without its file name),
	// so say it plainly.
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory, not a file; give the path of the file in it", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxFileSize)
	}
	return data, nil
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
