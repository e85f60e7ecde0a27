#!/usr/bin/env bash
# 500 rooms × 10 members @20 msg/s against a Palaver whose pushing is on: an operator's
# webhook hears `notification` events, so every stored message is considered for its
# members without a live socket. Compare with the same scenario of compare-references.sh
# (pushing off) to see what notification work adds to the message path.
#
#   loadtest/scripts/rooms-with-push.sh [OUT_DIR]     (default: loadtest/results/<date>)
#
# Loopback only; the server runs on core 0 (the generator pins itself to core 1); bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-loadtest/results/$(date +%Y-%m-%d)}
mkdir -p "$OUT"
cargo build --release -q -p palaver-server -p palaver-load
PALAVER=target/release/palaver
DATA=$(mktemp -d /tmp/palaver-push-XXXX)
PORT=18080
ulimit -n "$(ulimit -Hn)"
ARGS=(--http-addr "127.0.0.1:$PORT" --quic-addr 127.0.0.1:0 --data-dir "$DATA/data" --shards 1
  --ops-per-sec 1000000 --ops-burst 1000000 --max-in-flight 100000
  --max-connections-per-ip 0 --max-connections-per-user 0 --sign-ins-per-minute-per-ip 0)
start() {
  taskset -c 0 "$PALAVER" "${ARGS[@]}" >>"$DATA/log" 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.1; done
  echo "palaver did not start (see $DATA/log)" >&2; exit 1
}
stop() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; }
trap 'stop; rm -rf "$DATA"' EXIT

start; stop   # makes the data directory, so the CLI can add a key to it
KEY=$("$PALAVER" api-key create load --scope admin --data-dir "$DATA/data" | grep -o 'pvk_[0-9a-f_]*' | head -1)
start
# Port 9 (discard) on loopback: nothing is ever sent to it in this scenario, since every
# member is connected.
curl -sf -X POST "127.0.0.1:$PORT/v1/server/webhooks" -H "authorization: Bearer $KEY" \
  -H 'content-type: application/json' -d '{"url":"http://127.0.0.1:9/sink","events":["notification"]}' >/dev/null
name=rooms-500x10-20-palaver-rkyv-push-on
target/release/palaver-load rooms --target palaver-rkyv --addr "127.0.0.1:$PORT" --quiet \
  --out "$OUT/$name.json" --md "$OUT/$name.md" --html "$OUT/$name.html" \
  --rooms 500 --members 10 --rate 20 --duration 10 \
  | grep -E 'deliveries/s|latency p50|latency p99 |arrival p99 |µs (user|total)|errors' || true
curl -s "127.0.0.1:$PORT/metrics" | grep -E '^palaver_push_fan_outs_total' || true
echo "results in $OUT"
