#!/usr/bin/env bash
# Runs Herald end to end on this machine: an embedded nats-server, the Alerts
# and Providers in examples/config, and a local receiver standing in for Slack
# and a webhook. Posts two Flux events and shows what the destinations got.
# With --once it stops afterwards; otherwise Herald keeps running until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

once=false
[ "${1:-}" = "--once" ] && once=true
port="${HERALD_DEMO_PORT:-9090}"
admin="${HERALD_DEMO_ADMIN_PORT:-8080}"
receiver_port=9099   # the address in examples/config

HERALD_NATS_SERVER="$(scripts/nats-server.sh)"
export HERALD_NATS_SERVER
echo "Building herald ..."
cargo build --quiet --bin herald
bin="${CARGO_TARGET_DIR:-target}/debug/herald"

log="$(mktemp -d)"
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

python3 -u examples/receiver.py "$receiver_port" >"$log/received.txt" 2>&1 &
receiver=$!
sleep 0.5
kill -0 "$receiver" 2>/dev/null || { cat "$log/received.txt"; echo "The demo receiver cannot listen on 127.0.0.1:$receiver_port (the address in examples/config); free that port."; exit 1; }
"$bin" standalone --config-dir examples/config \
  --listen "127.0.0.1:$port" --grpc-listen off --admin-listen "127.0.0.1:$admin" \
  >"$log/herald.log" 2>&1 &

for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null || { cat "$log/herald.log"; echo "Herald did not become ready"; exit 1; }
echo "Herald is ready; Flux would POST to http://127.0.0.1:$port/"

for event in examples/events/kustomization-failed.json examples/events/kustomization-applied.json; do
  code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "@$event" "http://127.0.0.1:$port/")
  echo "POST $event -> $code"
done

for _ in $(seq 1 50); do
  [ "$(grep -c '^=== POST' "$log/received.txt" || true)" -ge 2 ] && break
  sleep 0.2
done
cat "$log/received.txt"
delivered=$(grep -c '^=== POST' "$log/received.txt" || true)
echo
echo "$delivered notifications delivered. Metrics: http://127.0.0.1:$admin/metrics"
[ "$delivered" -ge 2 ] || { cat "$log/herald.log"; exit 1; }

if ! $once; then
  echo "Herald keeps running; POST more events to http://127.0.0.1:$port/ (Ctrl-C to stop)."
  tail -f "$log/received.txt"
fi
