#!/usr/bin/env bash
# Runs Palaver and the two reference servers (loadtest/references: Node `ws` and Socket.io)
# through the same scenarios in one session, server pinned to core 0 and the generator to
# core 1, and writes JSON results, Markdown summaries and HTML/SVG reports.
#
#   loadtest/scripts/compare-references.sh [OUT_DIR]     (default: loadtest/results/<date>)
#
# Needs node and npm (`npm ci` installs the references' packages in loadtest/references). Loopback
# only; every run is bounded (10 s measured + warm-up).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-loadtest/results/$(date +%Y-%m-%d)}
mkdir -p "$OUT"
cargo build --release -q -p palaver-server -p palaver-load
LOAD=target/release/palaver-load
PALAVER=target/release/palaver
BASE=$PWD/loadtest/references
(cd "$BASE" && npm ci --silent --no-audit --no-fund >/dev/null)
ulimit -n "$(ulimit -Hn)"

start_baseline() { # name file port
  (cd "$BASE" && BASELINE_ADDR=127.0.0.1:$3 exec taskset -c 0 node "$2" >/dev/null 2>&1) &
  BASELINE_PID=$!
  for _ in $(seq 50); do curl -sf "127.0.0.1:$3/healthz" >/dev/null && return; sleep 0.1; done
  echo "baseline $1 did not start" >&2; exit 1
}
stop_baseline() { kill "$BASELINE_PID" 2>/dev/null || true; wait "$BASELINE_PID" 2>/dev/null || true; }

run() { # scenario target name args...
  local scenario=$1 target=$2 name=$3; shift 3
  local where=()
  case $target in
    palaver-*) where=(--spawn-palaver "$PALAVER") ;;
    ws-baseline) start_baseline ws ws-server.js 9001; where=(--addr 127.0.0.1:9001) ;;
    socketio) start_baseline socketio socketio-server.js 9002; where=(--addr 127.0.0.1:9002) ;;
  esac
  echo "== $name ($target)"
  $LOAD "$scenario" --target "$target" "${where[@]}" --quiet \
    --out "$OUT/$name-$target.json" --md "$OUT/$name-$target.md" --html "$OUT/$name-$target.html" "$@" \
    | grep -E 'deliveries/s|latency p50|latency p99 |arrival p99 |µs (user|total)|connections/s|RSS bytes|errors|pages/s|history p99|sends/s' || true
  [[ $target == palaver-* ]] || stop_baseline
  sleep 2
}

for t in palaver-rkyv palaver-json ws-baseline socketio; do
  run fanout "$t" fanout-1x1000-100 --members 1000 --rate 100 --duration 10
done
for t in palaver-rkyv palaver-json ws-baseline socketio; do
  run rooms "$t" rooms-500x10-20 --rooms 500 --members 10 --rate 20 --duration 10
done
for t in palaver-rkyv ws-baseline; do
  run fanout "$t" fanout-1x1000-1000 --members 1000 --rate 1000 --duration 5
done
for t in palaver-rkyv palaver-json ws-baseline socketio; do
  run connect "$t" connect-10000 --connections 10000 --users 1 --source-ips 4
done
for t in palaver-rkyv ws-baseline; do
  run history "$t" history --duration 10
done
echo "results in $OUT"
