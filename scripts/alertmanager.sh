#!/usr/bin/env bash
# Makes sure a real Alertmanager is there for the alertmanager provider's
# tests: Debian's prometheus-alertmanager, installed with apt-get (as root, or
# with passwordless sudo) when neither it nor HERALD_ALERTMANAGER is found.
set -euo pipefail

if [ -n "${HERALD_ALERTMANAGER:-}" ] && [ -x "$HERALD_ALERTMANAGER" ]; then
  exit 0
fi
if command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1; then
  exit 0
fi
echo "Installing Debian's prometheus-alertmanager for the tests ..." >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get install -y -q --no-install-recommends prometheus-alertmanager >/dev/null \
  || { $sudo_cmd apt-get update -q >/dev/null \
       && $sudo_cmd apt-get install -y -q --no-install-recommends prometheus-alertmanager >/dev/null; }
