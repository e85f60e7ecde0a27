#!/usr/bin/env bash
# The churn and mixed comparisons of docs/PERFORMANCE.md: Palaver (rkyv), the `ws`
# reference and the Socket.io reference, one after the other, server on core 0.
#
#   loadtest/scripts/churn-mixed.sh [OUT_DIR]     (default: loadtest/results/<date>)
#
# Takes target/release/palaver and palaver-load (build them first); installs the
# the references' packages in loadtest/references with `npm ci`.
set -u
cd "$(dirname "$0")/../.."
OUT=${1:-loadtest/results/$(date +%Y-%m-%d)}
mkdir -p "$OUT"
LOAD=target/release/palaver-load
BASE=$PWD/loadtest/references
(cd "$BASE" && npm ci --silent --no-audit --no-fund >/dev/null)
start() { (cd "$BASE" && BASELINE_ADDR=127.0.0.1:$2 exec taskset -c 0 node $1 >/dev/null 2>&1) & BP=$!; for _ in $(seq 50); do curl -sf 127.0.0.1:$2/healthz >/dev/null && break; sleep 0.1; done; }
stop() { kill $BP; wait $BP 2>/dev/null; }
ulimit -n 20000
for t in palaver-rkyv ws-baseline socketio; do
  case $t in
    palaver-rkyv) W=(--spawn-palaver target/release/palaver);;
    ws-baseline) start ws-server.js 9001; W=(--addr 127.0.0.1:9001);;
    socketio) start socketio-server.js 9002; W=(--addr 127.0.0.1:9002);;
  esac
  echo "== churn $t"
  $LOAD churn --target $t "${W[@]}" --clients 200 --connect-rate 100 --rate 100 --duration 10 --quiet --out $OUT/churn-200-$t.json --md $OUT/churn-200-$t.md --html $OUT/churn-200-$t.html 2>&1 | grep -E 'deliveries/s|latency p99 |connect p50|connect p99|connects/s|reconnects/s|gaps|duplicates|µs total|errors \(all'
  [ $t = palaver-rkyv ] || stop; sleep 2
  case $t in
    ws-baseline) start ws-server.js 9001;;
    socketio) start socketio-server.js 9002;;
  esac
  echo "== mixed $t"
  $LOAD mixed --target $t "${W[@]}" --profile loadtest/profiles/mixed.toml --duration 10 --quiet --out $OUT/mixed-$t.json --md $OUT/mixed-$t.md --html $OUT/mixed-$t.html 2>&1 | grep -E 'deliveries/s|latency p99 |history p99|connect p99|µs total|errors \(all'
  [ $t = palaver-rkyv ] || stop; sleep 2
done
