#!/usr/bin/env bash
# Renders the kustomize base in deploy/kustomize alone and with each of its
# components, and validates every rendering against the Kubernetes schemas
# when kubernetes-validate is installed (pip install kubernetes-validate).
#
#   scripts/deploy-check.sh              # render only, or validate if found
#   KUBERNETES_VERSION=1.32 scripts/deploy-check.sh
#
# Needs kubectl (client only; no cluster is contacted).
set -euo pipefail
cd "$(dirname "$0")/.."
base="$PWD/deploy/kustomize"
version="${KUBERNETES_VERSION:-1.32}"
validate="${KUBERNETES_VALIDATE:-$(command -v kubernetes-validate || true)}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kustomize accepts only relative paths to a base or component.
rel() { realpath --relative-to="$1" "$2"; }

render() { # name, components...
	local name="$1"
	shift
	local dir="$work/$name"
	mkdir -p "$dir"
	{
		echo "resources: [$(rel "$dir" "$base")]"
		echo "components:"
		for component in "$@"; do
			echo "  - $(rel "$dir" "$base/components/$component")"
		done
	} >"$dir/kustomization.yaml"
	kubectl kustomize "$dir" >"$work/$name.yaml"
	echo "rendered: deploy/kustomize${*:+ + $*} ($(grep -c '^kind:' "$work/$name.yaml") objects)"
	if [[ -n "$validate" ]]; then
		"$validate" --strict --quiet -k "$version" "$work/$name.yaml"
		echo "valid:    Kubernetes $version, strict"
	fi
}

kubectl kustomize "$base" >/dev/null
render base
render folder folder
render namespaced namespaced
render edge edge
[[ -n "$validate" ]] || echo "kubernetes-validate not found: rendered only"
