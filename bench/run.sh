#!/usr/bin/env bash
# The benchmark: the gateway against hailuo-sim on this machine, then the soak test.
# Figures go to bench/RESULTS.md (the soak's summary is appended to it).
#
#   bench/run.sh                      # everything (about 10 minutes on 2 cores, plus the soak)
#   bench/run.sh --only latency       # one phase: cold, latency, streams, memory
#   SOAK_REQUESTS=0 bench/run.sh      # skip the soak
#
# Loopback only: the simulator is the upstream; nothing here reaches the internet.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

cargo bench --locked --bench gateway -- "$@"

requests=${SOAK_REQUESTS:-100000}
if [ "$requests" != "0" ]; then
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  SOAK_REQUESTS=$requests cargo test --locked --release --test soak -- --ignored --nocapture 2>&1 | tee "$log"
  {
    echo
    echo "## 5. Soak"
    echo
    echo "\`SOAK_REQUESTS=$requests cargo test --release --test soak -- --ignored --nocapture\`:"
    echo
    echo '```'
    grep -E '^soak' "$log" || true
    grep -E '^test result' "$log" || true
    echo '```'
  } >> bench/RESULTS.md
fi
