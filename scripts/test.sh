#!/usr/bin/env bash
# Runs Herald's whole test suite against a real nats-server, a real
# Alertmanager and promtool (each installed on first use). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
HERALD_NATS_SERVER="$(scripts/nats-server.sh)"
scripts/alertmanager.sh
scripts/promtool.sh
export HERALD_NATS_SERVER
exec cargo test --workspace --all-targets "$@"
