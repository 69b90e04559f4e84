#!/usr/bin/env bash
# Makes sure promtool is there for the metrics tests (`promtool check
# metrics` on a live /metrics, `promtool check rules` on the alerts): Debian's
# prometheus package, installed with apt-get (as root, or with passwordless
# sudo) when neither it nor HERALD_PROMTOOL is found.
set -euo pipefail

if [ -n "${HERALD_PROMTOOL:-}" ] && [ -x "$HERALD_PROMTOOL" ]; then
  exit 0
fi
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
echo "Installing Debian's prometheus (for promtool) for the tests ..." >&2
sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null \
  || { $sudo_cmd apt-get update -q >/dev/null \
       && $sudo_cmd apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
