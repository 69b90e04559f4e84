#!/usr/bin/env bash
# Sends one Flux event to Herald's ingest, as a Flux controller would:
#
#   scripts/send-test-event.sh                                   # docker compose's ingest
#   scripts/send-test-event.sh http://localhost:9090/ examples/events/kustomization-applied.json
#
# Prints ingest's answer (202 when stored, or a duplicate within Flux's window:
# the event's message and revision make its dedupe key, so the example's
# timestamp is replaced by now and its message numbered to make each new).
set -euo pipefail
cd "$(dirname "$0")/.."
url="${1:-${HERALD_INGEST_URL:-http://localhost:9090/}}"
file="${2:-examples/events/kustomization-failed.json}"
now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
body="$(sed -e "s/\"timestamp\": *\"[^\"]*\"/\"timestamp\": \"$now\"/" \
            -e "s/\"message\": *\"/\"message\": \"[test $(date +%s)] /" "$file")"
curl -sS -w '%{http_code}\n' -H 'Content-Type: application/json' --data-binary "$body" "$url"
