#!/usr/bin/env bash
# Fan-out (1 room x 1,000 members, one sender) against a palaver cluster of 1, 2 and 3
# nodes spawned by the harness (`--spawn-cluster N`: a `nats-server -js` plus N nodes, client
# sockets spread round-robin over the nodes), at 100 msg/s and at 1,000 msg/s, then
# `compare` over each set. Every server process (the nodes and nats-server) is pinned to
# core 0 and the generator to core 1, as in compare-references.sh: the cluster's server CPU
# is the sum over all of them, so the columns show what clustering costs on one core.
#
#   loadtest/scripts/cluster-fanout.sh [OUT_DIR]     (default: loadtest/results/<date>)
#
# Builds nothing: takes target/release/palaver and target/release/palaver-load (or those
# under $CARGO_TARGET_DIR); needs nats-server on PATH. Loopback only; every run is bounded
# (10 s, or 5 s at 1,000 msg/s, measured + warm-up). Writes OUT_DIR/cluster-fanout-N.json
# and .md (100 msg/s), OUT_DIR/cluster-fanout-1000-N.json and .md (1,000 msg/s), and the
# two comparisons as OUT_DIR/cluster-fanout-compare.md and cluster-fanout-1000-compare.md
# (each run's printed summary goes to OUT_DIR/NAME.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-loadtest/results/$(date +%Y-%m-%d)}
mkdir -p "$OUT"
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LOAD=$TARGET_DIR/release/palaver-load
PALAVER=$TARGET_DIR/release/palaver
for binary in "$LOAD" "$PALAVER"; do
  [[ -x $binary ]] || { echo "missing $binary: build it first (cargo build --release -p palaver-server -p palaver-load)" >&2; exit 1; }
done
command -v nats-server >/dev/null || { echo "nats-server is not on PATH" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

run() { # name nodes args...
  local name=$1 nodes=$2; shift 2
  echo "== $name (cluster of $nodes)"
  # A failed run (e.g. the cluster did not form) stops the script: no stale result is compared.
  "$LOAD" fanout --target palaver-rkyv --spawn-palaver "$PALAVER" --spawn-cluster "$nodes" \
    --server-core 0 --client-core 1 --quiet \
    --out "$OUT/$name.json" --md "$OUT/$name.md" "$@" >"$OUT/$name.txt"
  grep -E 'server nodes|deliveries/s|latency p50|latency p99 |µs (user|total)|server CPU|errors' "$OUT/$name.txt" || true
  sleep 2
}

for n in 1 2 3; do
  run "cluster-fanout-$n" "$n" --members 1000 --senders 1 --rate 100 --duration 10
done
"$LOAD" compare "$OUT"/cluster-fanout-{1,2,3}.json | tee "$OUT/cluster-fanout-compare.md"

for n in 1 2 3; do
  run "cluster-fanout-1000-$n" "$n" --members 1000 --senders 1 --rate 1000 --duration 5
done
"$LOAD" compare "$OUT"/cluster-fanout-1000-{1,2,3}.json | tee "$OUT/cluster-fanout-1000-compare.md"
echo "results in $OUT"
