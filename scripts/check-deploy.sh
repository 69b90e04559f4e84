#!/usr/bin/env bash
# CI check of everything under deploy/, without a cluster or a helm binary:
#   1. deploy/helm/herald: `helm lint --strict` and a rendering for the
#      default values and for each examples/*.yaml, with the real Helm engine
#      (PyPI's helm-python-sdk), every rendered object validated by
#      kubernetes-validate --strict, and the CRD kinds (ServiceMonitor,
#      PrometheusRule, ScaledObject) against scripts/deploy-schemas; with a
#      herald binary, every flag and HERALD_* variable the chart sets is
#      checked against `herald <subcommand> --help` (scripts/check-deploy.py);
#   2. deploy/kustomize: the base alone and with each component, rendered by
#      `kubectl kustomize` and validated (scripts/deploy-check.sh).
# Any finding fails. The tools go into a virtualenv under
# ${HERALD_TOOLS_DIR:-~/.cache/herald}, like scripts/nats-server.sh's.
#
#   scripts/check-deploy.sh
#   KUBERNETES_VERSION=1.33 scripts/check-deploy.sh
#   HERALD_NATS_CHART=path/to/nats scripts/check-deploy.sh   # the real NATS chart
set -euo pipefail
cd "$(dirname "$0")/.."

helm_sdk=0.2.2             # Helm v4 compiled in
kubernetes_validate=1.37.0 # schemas up to Kubernetes 1.37
tools="${HERALD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/herald}"
venv="$tools/deploy-venv"
export KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.32}"

installed() { # package version
	# sed reads all of pip's output (grep -q would end the pipe early).
	[ "$("$venv/bin/python" -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p')" = "$2" ]
}
if ! { [ -x "$venv/bin/python" ] && installed helm-python-sdk "$helm_sdk" &&
	installed kubernetes-validate "$kubernetes_validate"; }; then
	echo "Installing helm-python-sdk $helm_sdk and kubernetes-validate $kubernetes_validate into $venv ..." >&2
	mkdir -p "$tools"
	python3 -m venv "$venv"
	"$venv/bin/pip" install --quiet --disable-pip-version-check \
		"helm-python-sdk==$helm_sdk" "kubernetes-validate==$kubernetes_validate"
fi
export KUBERNETES_VALIDATE="$venv/bin/kubernetes-validate"

# A herald binary to check flags against: HERALD_BIN, else a build in the
# cargo target folder CI uses (this script runs before any build).
if [ -z "${HERALD_BIN:-}" ]; then
	for candidate in "${CARGO_TARGET_DIR:-target}/debug/herald" "${CARGO_TARGET_DIR:-target}/release/herald"; do
		if [ -x "$candidate" ]; then
			HERALD_BIN="$candidate"
			break
		fi
	done
fi
export HERALD_BIN="${HERALD_BIN:-}"

command -v kubectl >/dev/null || { echo "check-deploy: kubectl is needed for kustomize" >&2; exit 1; }

"$venv/bin/python" scripts/check-deploy.py
scripts/deploy-check.sh
echo "deploy: chart and kustomize checked"
