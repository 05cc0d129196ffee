package bench

import (
	"bytes"
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkEndToEnd delivers b.N pre-published intents through setrelay as
// 'setrelay run' assembles it, and reports SETs/s and CPU time per SET of
// the drain alone. ns/op includes start-up and publishing, so give the
// count explicitly:
//
//	go test -run '^$' -bench EndToEnd -benchtime 20000x ./bench/
func BenchmarkEndToEnd(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		b.Run(string(alg), func(b *testing.B) {
			res, err := Throughput(context.Background(), PipelineOptions{Alg: alg, Workers: 64}, b.N, "")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(res.SetsPerSec, "SETs/s")
			b.ReportMetric(res.CPUPerSetUS, "cpu-us/SET")
			b.ReportMetric(res.ForeignUtil, "foreign-cores")
		})
	}
}

// TestThroughputDeliversAll runs the benchmark's code path at a tiny size,
// so it cannot rot: every intent delivered once as a SET the receiver
// accepted, one token fetch for the run, and figures in a sane range.
func TestThroughputDeliversAll(t *testing.T) {
	const n = 200
	res, err := Throughput(context.Background(), PipelineOptions{Alg: jose.ES256, Workers: 16}, n, filepath.Join(t.TempDir(), "cpu.prof"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != n {
		t.Errorf("delivered %d, want %d", res.Delivered, n)
	}
	if res.TokenFetches != 1 {
		t.Errorf("token fetches %d, want 1 (the token is valid for an hour)", res.TokenFetches)
	}
	if res.SetsPerSec <= 0 || res.Secs <= 0 {
		t.Errorf("rate %v over %vs", res.SetsPerSec, res.Secs)
	}
	// Signing alone costs tens of µs; a whole second per SET would mean
	// the meter reads something else.
	if res.CPUPerSetUS < 20 || res.CPUPerSetUS > 1e6 {
		t.Errorf("CPU per SET %.1f µs, outside any plausible range", res.CPUPerSetUS)
	}
	if res.PeakRSSKB <= 0 {
		t.Errorf("peak RSS %d kB", res.PeakRSSKB)
	}
	// An ECDSA signature alone allocates dozens of objects and a push a
	// few kB; far fewer would mean the counters were read wrongly.
	if res.AllocsPerSet < 50 || res.BytesPerSet < 2000 {
		t.Errorf("%.0f allocations and %.0f bytes per SET, below what signing and pushing alone allocate", res.AllocsPerSet, res.BytesPerSet)
	}
}

// TestVerifiedSETs pushes to the conformance receiver instead of the plain
// one: it answers 202 only to a SET that verifies and has the configured
// issuer and audience, so every delivery counted is a correct SET.
func TestVerifiedSETs(t *testing.T) {
	const n = 50
	res, err := Throughput(context.Background(), PipelineOptions{Alg: jose.ES256, Workers: 8, Verify: true}, n, "")
	if err != nil {
		t.Fatal(err)
	}
	if res.Delivered != n {
		t.Errorf("conformance receiver accepted %d, want %d", res.Delivered, n)
	}
}

// TestRunReport runs every phase at a tiny size, without the baseline, and
// checks the report has every RESULT line with its figures.
func TestRunReport(t *testing.T) {
	var out bytes.Buffer
	var logs bytes.Buffer
	err := Run(context.Background(), Options{
		Algs: []jose.SignatureAlgorithm{jose.ES256}, N: 100, Workers: 8,
		LatencyRate: 200, LatencyDuration: 500 * time.Millisecond,
		Backlog: 300, LogOutput: &logs,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	report := out.String()
	t.Log(report)
	if !strings.Contains(report, "comparison skipped") {
		t.Error("no note that the baseline was skipped")
	}
	want := map[string][]string{
		"RESULT setrelay": {"msgs_per_s", "total_cpu_us_per_msg", "foreign_cpu_util", "peak_rss_kb"},
		"RESULT latency":  {"p50_ms", "p99_ms"},
		"RESULT backlog":  {"rss_start_kb", "rss_max_kb", "heap_max_kb"},
		"RESULT process":  {"peak_rss_kb"},
	}
	for prefix, keys := range want {
		line := lineWith(report, prefix)
		if line == "" {
			t.Errorf("no %q line", prefix)
			continue
		}
		f := ParseResult(line)
		for _, k := range keys {
			v, err := strconv.ParseFloat(f[k], 64)
			if err != nil || v < 0 || (k != "foreign_cpu_util" && v == 0) {
				t.Errorf("%s: %s=%q", prefix, k, f[k])
			}
		}
	}
	if f := ParseResult(lineWith(report, "RESULT latency")); f["delivered"] != "100" {
		t.Errorf("latency phase delivered %q, want 100", f["delivered"])
	}
	// Logging is on at info, as in production: one line per delivery.
	if got := strings.Count(logs.String(), `"msg":"delivered"`); got < 100 {
		t.Errorf("%d delivery log lines, want at least 100 (logging must be on as in production)\n%.2000s", got, logs.String())
	}
}

func lineWith(report, prefix string) string {
	for _, l := range strings.Split(report, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return l
		}
	}
	return ""
}

// TestBaselineMissing: a missing baseline directory is reported and the
// rest still runs, rather than failing the whole bench.
func TestBaselineMissing(t *testing.T) {
	_, err := BuildBaseline(context.Background(), filepath.Join(t.TempDir(), "nope"), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), ErrNoBaseline.Error()) {
		t.Fatalf("err = %v, want ErrNoBaseline", err)
	}
}

// TestBaseline builds and runs the real baseline when it is there (it is
// in the project's shared tree, not in this repository).
func TestBaseline(t *testing.T) {
	dir := DefaultBaselineDir()
	if _, err := os.Stat(filepath.Join(dir, "pipeline", "main.go")); err != nil {
		t.Skipf("no baseline at %s", dir)
	}
	if testing.Short() {
		t.Skip("builds the baseline: not in -short")
	}
	bin, err := BuildBaseline(context.Background(), dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunBaseline(context.Background(), bin, "ES256", 8, 200)
	if err != nil {
		t.Fatal(err)
	}
	if res.SetsPerSec <= 0 || res.CPUPerSetUS <= 0 || res.Fields["failed"] != "0" {
		t.Errorf("baseline result %q", res.Line)
	}
	lat, err := RunBaselineLatency(context.Background(), bin, "ES256", 8, 200, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if lat.P50 <= 0 || lat.P99 < lat.P50 || lat.Max < lat.P99 || lat.CPUPerSetUS <= 0 {
		t.Errorf("baseline latency result %q parsed as p50 %v p99 %v max %v", lat.Line, lat.P50, lat.P99, lat.Max)
	}
}

func TestParseResult(t *testing.T) {
	f := ParseResult("RESULT pipe label= alg=ES256 msgs_per_s=8200 total_cpu_us_per_msg=240.5")
	for k, v := range map[string]string{"label": "", "alg": "ES256", "msgs_per_s": "8200", "total_cpu_us_per_msg": "240.5"} {
		if got, ok := f[k]; !ok || got != v {
			t.Errorf("%s = %q (present %v), want %q", k, got, ok, v)
		}
	}
}

// TestPairedMedianCancelsDrift uses the ES256 CPU per SET of a real
// --repeat 5 run (2026-11-30, µs): the baseline drifted from 122 to 153 µs
// while setrelay held at 119-127, then both slowed. The ratio of the two
// medians (0.89) pairs the baseline's slow runs with setrelay's fast ones;
// the pairs' own ratios give 0.97.
func TestPairedMedianCancelsDrift(t *testing.T) {
	ours := []float64{121.2, 121.9, 118.6, 127.3, 159.4}
	base := []float64{123.0, 137.1, 121.8, 152.8, 150.0}
	id := func(v float64) float64 { return v }
	if got := median(ours, id) / median(base, id); math.Abs(got-0.889) > 0.001 {
		t.Fatalf("ratio of medians = %.3f, want 0.889", got)
	}
	if got := pairedMedian(ours, base, id, id); math.Abs(got-0.974) > 0.001 {
		t.Fatalf("median of the pairs' ratios = %.3f, want 0.974 (118.6 / 121.8)", got)
	}
	// A run without its partner, and a baseline figure of zero (no
	// RESULT), are left out rather than counted.
	if got := pairedMedian([]float64{1, 2, 9}, []float64{2, 0}, id, id); got != 0.5 {
		t.Fatalf("pairedMedian with a missing and a zero baseline = %v, want 0.5", got)
	}
}
