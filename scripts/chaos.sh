#!/usr/bin/env bash
# The full-size chaos run (issue 7): a 3-node nats-server cluster, 3
# `setrelay run` workers and a fault-injecting `setrelay receiver`, 20,000
# intents over 3 minutes while workers and a NATS node are killed. Ends with
# one line:
#   chaos: intents=20000 delivered=... dlq=100 lost=0 dup=...% mismatched=0 worker_kills=... nats_kills=1 duration=...s
# and exits 0 only if every check held. Extra arguments go to the test, e.g.
#   scripts/chaos.sh -seed 42 -logdir /tmp/chaos-logs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

INTENTS="${INTENTS:-20000}"
DURATION="${DURATION:-3m}"

exec go test -count=1 -timeout 30m -run '^TestChaos$' -v ./test/chaos \
  -args -intents "$INTENTS" -duration "$DURATION" "$@"
