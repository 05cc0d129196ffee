package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SoftHSMModules are where Debian, Ubuntu, Fedora and Homebrew install
// SoftHSM2's PKCS#11 module.
var SoftHSMModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/opt/homebrew/lib/softhsm/libsofthsm2.so",
}

// SoftHSM is a SoftHSM2 token for tests: its module, label and user PIN.
type SoftHSM struct {
	Module     string
	TokenLabel string
	PIN        string
	// PINFile holds the PIN, for keys[].pkcs11.pin_file.
	PINFile string
}

// KeyLabel is a key label on the shared token that no other test, and no
// other run of the same test (go test -count=N), has used: tb's name, what,
// and a number unique in the process.
func (h *SoftHSM) KeyLabel(tb testing.TB, what string) string {
	n := softhsmLabels.Add(1)
	return fmt.Sprintf("%s-%s-%d", strings.ReplaceAll(tb.Name(), "/", "-"), what, n)
}

var softhsmLabels atomic.Uint64

var (
	softhsmOnce sync.Once
	softhsm     *SoftHSM
	softhsmErr  error
	// softhsmDir is the token directory initSoftHSM made, for
	// RemoveSoftHSM; it is set even when initialisation fails half-way.
	softhsmDir string
)

// Main runs a package's tests and then removes what the process-wide
// fixtures left behind (the SoftHSM token directory), which no single
// test's Cleanup can own because every test of the process shares it.
// A package whose tests call StartSoftHSM uses it as its TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if err := RemoveSoftHSM(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
	}
	os.Exit(code)
}

// RemoveSoftHSM deletes the process's SoftHSM token directory, if one was
// made. Call it only when no test will use the token again.
func RemoveSoftHSM() error {
	if softhsmDir == "" {
		return nil
	}
	if err := os.RemoveAll(softhsmDir); err != nil {
		return fmt.Errorf("remove the SoftHSM token directory: %w", err)
	}
	softhsmDir = ""
	return nil
}

// StartSoftHSM returns the process's SoftHSM2 token, initialising it the
// first time in a fresh directory. SoftHSM reads its configuration
// (SOFTHSM2_CONF) once per process when the module is loaded, so every
// test of a process shares one token; tests keep apart by key labels.
//
// Without softhsm2 installed the test is skipped unless CI is set: .ci/run
// installs it, so in CI these tests always run.
func StartSoftHSM(tb testing.TB) *SoftHSM {
	tb.Helper()
	softhsmOnce.Do(func() { softhsm, softhsmErr = initSoftHSM() })
	if softhsmErr != nil {
		if errors.Is(softhsmErr, errNotInstalled) && os.Getenv("CI") == "" {
			tb.Skipf("%v (install the softhsm2 package; .ci/run does)", softhsmErr)
		}
		tb.Fatal(softhsmErr)
	}
	return softhsm
}

var errNotInstalled = errors.New("softhsm2 is not installed")

func initSoftHSM() (*SoftHSM, error) {
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		return nil, errNotInstalled
	}
	module := ""
	for _, m := range SoftHSMModules {
		if _, err := os.Stat(m); err == nil {
			module = m
			break
		}
	}
	if module == "" {
		return nil, fmt.Errorf("%w: no libsofthsm2.so in %v", errNotInstalled, SoftHSMModules)
	}
	// Not tb.TempDir: the token outlives the first test that asks for it.
	dir, err := os.MkdirTemp("", "setrelay-softhsm-")
	if err != nil {
		return nil, err
	}
	softhsmDir = dir
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	body := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	os.Setenv("SOFTHSM2_CONF", conf)
	h := &SoftHSM{Module: module, TokenLabel: "setrelay-test", PIN: "4321-test", PINFile: filepath.Join(dir, "pin")}
	if err := os.WriteFile(h.PINFile, []byte(h.PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	out, err := exec.Command(util, "--init-token", "--free", "--label", h.TokenLabel, "--pin", h.PIN, "--so-pin", "8765-so").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %v: %s", err, out)
	}
	return h, nil
}

// LocalKMSVersion is the local-kms version internal/tools/localkms pins.
const LocalKMSVersion = "v0.0.0-20260228092603-2a5e92d09ab6"

// LocalKMS is a running local-kms emulator of AWS KMS.
type LocalKMS struct {
	// URL is its endpoint, for keys[].kms.endpoint.
	URL    string
	Region string
}

var (
	localKMSOnce sync.Once
	localKMSBin  string
	localKMSErr  error
)

// StartLocalKMS builds local-kms (once per machine: the binary is cached
// under the user cache directory, keyed by the tool module's go.sum) and
// starts a fresh emulator with its own data directory. It sets dummy AWS
// credentials in the environment when none are set, as the standard chain
// needs some to sign requests.
func StartLocalKMS(tb testing.TB) *LocalKMS {
	tb.Helper()
	localKMSOnce.Do(func() {
		localKMSBin, localKMSErr = buildLocalKMS()
		for k, v := range map[string]string{
			"AWS_ACCESS_KEY_ID": "AKIDSETRELAYTEST", "AWS_SECRET_ACCESS_KEY": "setrelay-test-secret",
			"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.DevNull, "AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
		} {
			if _, ok := os.LookupEnv(k); !ok {
				os.Setenv(k, v)
			}
		}
	})
	if localKMSErr != nil {
		tb.Fatal(localKMSErr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(localKMSBin)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port), "KMS_REGION=eu-west-2",
		"KMS_ACCOUNT_ID=111122223333", "KMS_DATA_PATH="+tb.TempDir(), "KMS_SEED_PATH="+filepath.Join(tb.TempDir(), "none.yaml"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &limitedBuffer{b: &logs, max: 64 << 10}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("local-kms did not listen on %d: %s", port, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &LocalKMS{URL: u, Region: "eu-west-2"}
}

type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < l.max {
		l.b.Write(p[:min(len(p), l.max-l.b.Len())])
	}
	return len(p), nil
}

// buildLocalKMS builds the emulator from internal/tools/localkms, a module
// of its own so its dependencies stay out of setrelay's go.mod.
func buildLocalKMS() (string, error) {
	_, self, _, _ := runtime.Caller(0)
	toolDir := filepath.Join(filepath.Dir(self), "..", "tools", "localkms")
	sum, err := os.ReadFile(filepath.Join(toolDir, "go.sum"))
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(sum)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "setrelay-test", "local-kms-"+hex.EncodeToString(h[:6]))
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	// Several test binaries may build at once: each writes its own file
	// and renames it into place.
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, "github.com/nsmithuk/local-kms")
	cmd.Dir = toolDir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build local-kms %s: %v: %s", LocalKMSVersion, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// KMSProxy is a real HTTP reverse proxy in front of a KMS endpoint that
// can add latency to every call and answer chosen calls itself, as an
// overloaded or throttling KMS would.
type KMSProxy struct {
	URL string
	// Latency is added before every forwarded call.
	Latency atomic.Int64 // nanoseconds
	// Throttle, when it returns true for a call (by KMS operation, such as
	// "TrentService.Sign"), answers 400 ThrottlingException instead of
	// forwarding it.
	throttle atomic.Pointer[func(op string) bool]
	// Throttled counts the answered ThrottlingExceptions.
	Throttled atomic.Int64
	// Forwarded counts calls passed to the emulator, by nobody's clock.
	Forwarded atomic.Int64
	// fault, when set, answers the calls it matches with a KMS error.
	fault atomic.Pointer[kmsFault]
}

type kmsFault struct {
	match  func(op string) bool
	status int
	code   string
}

// SetFault makes the proxy answer every call that match accepts with an
// AWS JSON error of code and HTTP status instead of forwarding it, as KMS
// or its front end answers a failure of its own. A nil match removes it.
func (p *KMSProxy) SetFault(match func(op string) bool, status int, code string) {
	if match == nil {
		p.fault.Store(nil)
		return
	}
	p.fault.Store(&kmsFault{match: match, status: status, code: code})
}

// SetThrottle installs the throttling decision; nil throttles nothing.
func (p *KMSProxy) SetThrottle(f func(op string) bool) {
	if f == nil {
		p.throttle.Store(nil)
		return
	}
	p.throttle.Store(&f)
}

// StartKMSProxy starts a proxy in front of target.
func StartKMSProxy(tb testing.TB, target string) *KMSProxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	p := &KMSProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 512}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if f := p.throttle.Load(); f != nil && (*f)(op) {
			p.Throttled.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
			return
		}
		if f := p.fault.Load(); f != nil && f.match(op) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.WriteHeader(f.status)
			_, _ = fmt.Fprintf(w, `{"__type":%q,"message":"injected by the test proxy"}`, f.code)
			return
		}
		if d := time.Duration(p.Latency.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		p.Forwarded.Add(1)
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// IsKMSSign reports whether a KMS operation (X-Amz-Target) is Sign.
func IsKMSSign(op string) bool { return strings.HasSuffix(op, ".Sign") }
