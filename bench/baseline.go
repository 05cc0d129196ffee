package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNoBaseline means the baseline directory is not there; the comparison
// is skipped.
var ErrNoBaseline = errors.New("baseline not found")

// BaselineResult is the baseline's RESULT line, parsed.
type BaselineResult struct {
	Line        string            // the line as printed
	Fields      map[string]string // key=value pairs
	SetsPerSec  float64           // msgs_per_s
	CPUPerSetUS float64           // total_cpu_us_per_msg
	ForeignUtil float64           // foreign_cpu_util
	PeakRSSKB   int64             // the subprocess's maximum RSS (getrusage)
	// P50, P99 and Max are publish-to-202 latencies, in latency mode.
	P50, P99, Max time.Duration
}

// BuildBaseline compiles the baseline's pipeline command from dir into
// outDir and returns the binary's path. The baseline is its own module
// (module baseline) with the same dependencies, found in the module cache.
func BuildBaseline(ctx context.Context, dir, outDir string) (string, error) {
	if _, err := os.Stat(filepath.Join(dir, "pipeline", "main.go")); err != nil {
		return "", fmt.Errorf("%w at %s: %w", ErrNoBaseline, dir, err)
	}
	bin := filepath.Join(outDir, "baseline-pipeline")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./pipeline")
	cmd.Dir = dir
	// The directory may be read-only: never let the go command try to
	// rewrite go.mod or go.sum there.
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("bench: building the baseline in %s: %w\n%s", dir, err, out)
	}
	return bin, nil
}

// RunBaseline runs the baseline binary with the same algorithm, worker
// count and message count, and parses its RESULT line.
func RunBaseline(ctx context.Context, bin, alg string, workers, n int) (BaselineResult, error) {
	return runBaseline(ctx, bin, "-alg", alg, "-workers", strconv.Itoa(workers), "-n", strconv.Itoa(n))
}

// RunBaselineLatency runs the baseline in its latency mode: it publishes
// rate intents a second for d while consuming, and adds p50_ms, p99_ms and
// max_ms (publish to 202) to its RESULT line.
func RunBaselineLatency(ctx context.Context, bin, alg string, workers, rate int, d time.Duration) (BaselineResult, error) {
	res, err := runBaseline(ctx, bin, "-alg", alg, "-workers", strconv.Itoa(workers), "-rate", strconv.Itoa(rate), "-duration", d.String())
	if err != nil {
		return res, err
	}
	for key, dst := range map[string]*time.Duration{"p50_ms": &res.P50, "p99_ms": &res.P99, "max_ms": &res.Max} {
		v, err := strconv.ParseFloat(res.Fields[key], 64)
		if err != nil {
			return res, fmt.Errorf("bench: baseline RESULT %s: %w (is the baseline older than its latency mode?)", key, err)
		}
		*dst = time.Duration(v * float64(time.Millisecond))
	}
	return res, nil
}

func runBaseline(ctx context.Context, bin string, args ...string) (BaselineResult, error) {
	var res BaselineResult
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return res, fmt.Errorf("bench: baseline: %w\n%s", err, stderr.Bytes())
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSSKB = ru.Maxrss // kB on Linux
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "RESULT ") {
			res.Line = sc.Text()
		}
	}
	if res.Line == "" {
		return res, fmt.Errorf("bench: baseline printed no RESULT line:\n%s", out)
	}
	res.Fields = ParseResult(res.Line)
	for key, dst := range map[string]*float64{
		"msgs_per_s": &res.SetsPerSec, "total_cpu_us_per_msg": &res.CPUPerSetUS, "foreign_cpu_util": &res.ForeignUtil,
	} {
		v, err := strconv.ParseFloat(res.Fields[key], 64)
		if err != nil {
			return res, fmt.Errorf("bench: baseline RESULT %s: %w", key, err)
		}
		*dst = v
	}
	return res, nil
}

// ParseResult splits a RESULT line's key=value fields.
func ParseResult(line string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

// DefaultBaselineDir is ../shared/bench/baseline relative to the setrelay
// repository that holds the working directory (found by walking up to its
// go.mod), or relative to the working directory outside one.
func DefaultBaselineDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared", "bench", "baseline")
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/setrelay/setrelay\n")) {
			return filepath.Join(dir, "..", "shared", "bench", "baseline")
		}
		if filepath.Dir(dir) == dir {
			return filepath.Join(wd, "..", "shared", "bench", "baseline")
		}
	}
}
