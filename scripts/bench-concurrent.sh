#!/usr/bin/env bash
# A lower-noise estimate of ES256 CPU per SET, setrelay against the baseline.
#
# 'setrelay bench --repeat N' runs the two one after the other. On a shared
# 2-core virtual machine the CPU time of the same work drifts by 10-25 % over
# tens of seconds, which is more than the differences it is asked to show.
# This script starts the baseline and 'setrelay bench --no-baseline' at the
# same moment instead, ROUNDS times, swapping which starts first. Both then
# share the same two cores under the same drift, so the ratio of the two
# figures of one round is much steadier than the ratio of two runs taken
# seconds apart. Each still measures only its own drain phase.
#
# It is a second opinion, not the issue's method: the two compete for the
# cores, so the absolute figures are lower than in a solo run (the
# goroutines batch more). Compare the ratios.
#
#   scripts/bench-concurrent.sh                 # 8 rounds of 40,000 ES256 SETs
#   ROUNDS=12 N=60000 scripts/bench-concurrent.sh
#   BASELINE=/path/to/shared/bench/baseline scripts/bench-concurrent.sh
#
# Ends with: concurrent ES256 rounds=8 ratio_cpu_per_set(setrelay/baseline) median=... min=... max=...
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS="${ROUNDS:-8}"
N="${N:-40000}"
WORKERS="${WORKERS:-64}"
BASELINE="${BASELINE:-../shared/bench/baseline}"
OUT="$(mktemp -d /tmp/setrelay-bench-concurrent.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

if [ ! -f "$BASELINE/go.mod" ]; then
	echo "no baseline module at $BASELINE; set BASELINE=/path/to/shared/bench/baseline" >&2
	exit 2
fi
go build -o "$OUT/setrelay" ./cmd/setrelay
(cd "$BASELINE" && go build -o "$OUT/baseline" ./pipeline)
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

base=("$OUT/baseline" -alg ES256 -workers "$WORKERS" -n "$N")
ours=("$OUT/setrelay" bench --alg ES256 --no-latency --no-baseline --workers "$WORKERS" --n "$N")
ratios=()
for i in $(seq "$ROUNDS"); do
	if ((i % 2)); then
		"${base[@]}" >"$OUT/b.txt" 2>&1 &
		"${ours[@]}" >"$OUT/s.txt" 2>&1 &
	else
		"${ours[@]}" >"$OUT/s.txt" 2>&1 &
		"${base[@]}" >"$OUT/b.txt" 2>&1 &
	fi
	wait
	b=$(sed -nE 's/^RESULT pipe .*total_cpu_us_per_msg=([0-9.]+).*/\1/p' "$OUT/b.txt")
	s=$(sed -nE 's/^RESULT setrelay .*total_cpu_us_per_msg=([0-9.]+).*/\1/p' "$OUT/s.txt")
	if [ -z "$b" ] || [ -z "$s" ]; then
		echo "round $i: a run gave no RESULT line:" >&2
		cat "$OUT/b.txt" "$OUT/s.txt" >&2
		exit 1
	fi
	r=$(awk -v s="$s" -v b="$b" 'BEGIN { printf "%.3f", s / b }')
	ratios+=("$r")
	echo "round $i: baseline_cpu_us_per_set=$b setrelay_cpu_us_per_set=$s ratio=$r"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk -v n="$ROUNDS" '
	{ v[NR] = $1 }
	END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "concurrent ES256 rounds=%d ratio_cpu_per_set(setrelay/baseline) median=%.3f min=%.3f max=%.3f\n", n, m, v[1], v[NR]
	}'
