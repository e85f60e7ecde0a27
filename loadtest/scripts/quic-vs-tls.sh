#!/usr/bin/env bash
# QUIC against WebSocket over TLS (the fair baseline: both encrypt), same binary, same
# session: fan-out and many small rooms in both QUIC codecs, then members of several busy
# rooms behind the delay-and-loss relay (40 ms round trip; 1 % and 5 % loss each way; QUIC
# with BBR, the default, and with CUBIC).
# Server pinned to core 0, generator to core 1.
#
#   loadtest/scripts/quic-vs-tls.sh [OUT_DIR]     (default: loadtest/results/<date>-quic)
#
# Loopback only; every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-loadtest/results/$(date +%Y-%m-%d)-quic}
mkdir -p "$OUT"
cargo build --release -q -p palaver-server -p palaver-load
LOAD=target/release/palaver-load
PALAVER=target/release/palaver
ulimit -n "$(ulimit -Hn)"

run() { # scenario target name args...
  local scenario=$1 target=$2 name=$3; shift 3
  echo "== $name ($target)"
  $LOAD "$scenario" --target "$target" --spawn-palaver "$PALAVER" --quiet \
    --out "$OUT/$name-$target.json" --md "$OUT/$name-$target.md" --html "$OUT/$name-$target.html" "$@" \
    | grep -E 'deliveries/s|latency p50|latency p99 |µs (user|total)|errors' || true
  sleep 2
}

for t in palaver-rkyv-tls palaver-quic-rkyv palaver-quic-json; do
  run fanout "$t" fanout-1x1000-100 --members 1000 --rate 100 --duration 10
done
for t in palaver-rkyv-tls palaver-quic-rkyv palaver-quic-json; do
  run rooms "$t" rooms-500x10-20 --rooms 500 --members 10 --rate 20 --duration 10
done
for pct in 1 5; do
  loss=0.0$pct
  for t in palaver-rkyv-tls palaver-quic-rkyv; do
    run lossy "$t" "lossy-8rooms-40ms-${pct}pct" --rooms 8 --rate 20 --observers 10 --rtt-ms 40 --loss "$loss" --duration 20
  done
  # The same QUIC run with CUBIC instead of the default BBR.
  run lossy palaver-quic-rkyv "lossy-8rooms-40ms-${pct}pct-cubic" --rooms 8 --rate 20 --observers 10 --rtt-ms 40 \
    --loss "$loss" --duration 20 --server-arg=--quic-congestion=cubic
done
echo "results in $OUT"
