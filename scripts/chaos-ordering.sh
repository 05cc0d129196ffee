#!/usr/bin/env bash
# The full-size per-subject ordering run (issue 16): a 3-node nats-server
# cluster, 3 `setrelay run` workers SIGKILLed at random, a receiver with
# `ordering: subject` (256 partitions) that fails 10 % with 500, 2 % with 429
# and hangs 2 %, and 20,000 intents over 500 subjects. Ends with one line:
#   ordering: intents=20000 subjects=500 partitions=256 accepted=... out_of_order=0 lost=0 ...
# and exits 0 only if no SET arrived after a newer one about its subject and
# none was lost. Extra arguments go to the test, e.g.
#   scripts/chaos-ordering.sh -seed 42 -logdir /tmp/ordering-logs
# (-order-mode none shows the check failing against an unordered receiver.)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

INTENTS="${INTENTS:-20000}"
SUBJECTS="${SUBJECTS:-500}"
PARTITIONS="${PARTITIONS:-256}"
DURATION="${DURATION:-3m}"

exec go test -count=1 -timeout 30m -run '^TestOrderingChaos$' -v ./test/chaos \
  -args -order-intents "$INTENTS" -order-subjects "$SUBJECTS" -order-partitions "$PARTITIONS" \
  -order-duration "$DURATION" -order-drain 5m "$@"
