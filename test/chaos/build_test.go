package chaos

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// binDir holds the binaries built once per test binary run and shared by
// every test; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "setrelay-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: temp dir:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// moduleRoot is the repository root: the tests run in test/chaos.
func moduleRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found from the test directory: %v", err)
	}
	return root
}

type builtBinary struct {
	once sync.Once
	path string
	err  error
}

var (
	natsServerBin builtBinary
	setrelayBin   builtBinary
)

// goBuild builds pkg into binDir/name with the module's go.mod, so
// nats-server is exactly the version setrelay is tested against, and nothing
// is downloaded from anywhere but the Go module proxy.
func goBuild(t testing.TB, b *builtBinary, name, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		out := filepath.Join(binDir, name)
		cmd := exec.Command("go", "build", "-o", out, pkg)
		// The environment's build settings as they are, so the build reuses
		// the packages `go test` has just compiled.
		cmd.Dir = moduleRoot(t)
		msg, err := cmd.CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// natsServerBinary builds nats-server from github.com/nats-io/nats-server/v2
// at the version in go.mod.
func natsServerBinary(t testing.TB) string {
	return goBuild(t, &natsServerBin, "nats-server", "github.com/nats-io/nats-server/v2")
}

// setrelayBinary builds ./cmd/setrelay.
func setrelayBinary(t testing.TB) string {
	return goBuild(t, &setrelayBin, "setrelay", "./cmd/setrelay")
}
