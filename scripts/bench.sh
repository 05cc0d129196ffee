#!/bin/sh
# End-to-end benchmark: setrelay against ../shared/bench/baseline, in the
# same run. Builds setrelay once, then runs 'setrelay bench' with the
# arguments given (default: ES256 and RS256, 3 alternating runs each, the
# 1,000/s latency phase, and a CPU profile per algorithm in $OUT).
#
#   scripts/bench.sh                         # the comparison
#   scripts/bench.sh --backlog 1000000 --alg ES256 --no-latency --no-baseline
#   OUT=/tmp/b scripts/bench.sh --n 50000
#
# Then: go tool pprof -top "$OUT/setrelay" "$OUT/cpu.ES256.prof"
set -eu
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d /tmp/setrelay-bench.XXXXXX)}
mkdir -p "$OUT"
go build -o "$OUT/setrelay" ./cmd/setrelay
if [ "$#" -eq 0 ]; then
	set -- --repeat 3 --cpuprofile "$OUT/cpu.prof"
fi
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$OUT/setrelay" bench "$@" | tee "$OUT/results.txt"
echo "results and profiles in $OUT" >&2
