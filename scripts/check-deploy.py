"""Lints and renders deploy/helm/herald with the Helm engine of
helm-python-sdk (no helm binary), for the default values and for every
examples/*.yaml, and validates every rendered object: Kubernetes kinds with
kubernetes-validate --strict, the CRD kinds the chart writes
(ServiceMonitor, PrometheusRule, ScaledObject) against the schemas in
scripts/deploy-schemas. Run by scripts/check-deploy.sh, in its virtualenv.

The chart's optional dependency, the official NATS chart, cannot be fetched
here: the chart is checked with an empty stand-in chart named nats in
charts/, so that Herald's own objects are rendered with nats.enabled=true as
well (the NATS chart's objects are not). HERALD_NATS_CHART=DIR uses an
unpacked copy of the real chart instead.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python as helm
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "herald"
SCHEMAS = ROOT / "scripts" / "deploy-schemas"
KUBE_VERSION = os.environ.get("KUBERNETES_VERSION", "1.32")
VALIDATE = os.environ["KUBERNETES_VALIDATE"]
RELEASE, NAMESPACE = "herald", "herald"
# Kinds without a built-in schema, each checked against its own.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
}
# Herald's subcommands, by the component label of their pods.
SUBCOMMANDS = {"ingest": "ingest", "router": "router", "sender": "sender", "standalone": "standalone"}

failures = []


def fail(case, message):
    failures.append(f"{case}: {message}")
    print(f"FAIL {case}: {message}", file=sys.stderr)


def chart_copy(work):
    """The chart with its dependency in charts/: the real one or a stand-in."""
    chart = Path(work) / "herald"
    shutil.copytree(CHART, chart)
    dependency = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"][0]
    target = chart / "charts" / dependency["name"]
    real = os.environ.get("HERALD_NATS_CHART")
    if real:
        shutil.copytree(real, target)
        print(f"NATS chart: {real}")
    else:
        target.mkdir(parents=True)
        (target / "Chart.yaml").write_text(
            "apiVersion: v2\n"
            f"name: {dependency['name']}\n"
            f"version: {dependency['version']}\n"
            "description: stand-in for the official NATS chart (no objects)\n"
        )
        print(f"NATS chart: an empty stand-in for {dependency['name']} {dependency['version']}")
    return chart


def lint(case, chart, values):
    result = helm.lint(str(chart), values, strict=True, namespace=NAMESPACE, kube_version=KUBE_VERSION)
    for message in result.get("messages") or []:
        print(f"  lint [{message.get('severity')}] {message.get('path')}: {message.get('error')}")
    for error in result.get("errors") or []:
        fail(case, f"helm lint: {error.strip()}")


def render(case, chart, values):
    loaded = helm.Chart.load(str(chart))
    try:
        manifests = loaded.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    finally:
        loaded.close()
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")) or not text.strip():
            continue
        try:
            documents = list(yaml.safe_load_all(text))
        except yaml.YAMLError as error:
            fail(case, f"{path} is not YAML: {error}")
            continue
        for document in documents:
            if document is None:
                continue
            if not isinstance(document, dict) or not all(k in document for k in ("apiVersion", "kind", "metadata")):
                fail(case, f"{path}: a document without apiVersion, kind and metadata")
                continue
            objects.append((path, document))
    return objects


def check_unique(case, objects):
    seen = set()
    for _, obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", NAMESPACE), obj["metadata"]["name"])
        if key in seen:
            fail(case, f"{key[0]} {key[1]}/{key[2]} rendered twice")
        seen.add(key)


def check_contents(case, objects):
    """What no schema says: chart files parse, env and flags exist."""
    for _, obj in objects:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"].endswith("-dashboard"):
            for key, value in (obj.get("data") or {}).items():
                try:
                    dashboard = json.loads(value)
                except ValueError as error:
                    fail(case, f"dashboard {key} is not JSON: {error}")
                    continue
                if not dashboard.get("title") or not isinstance(dashboard.get("panels"), list):
                    fail(case, f"dashboard {key} has no title or panels")


def herald_help(binary, subcommand, cache={}):
    if subcommand not in cache:
        cache[subcommand] = subprocess.run(
            [binary, subcommand, "--help"], check=True, capture_output=True, text=True
        ).stdout
    return cache[subcommand]


def check_flags(case, objects, binary):
    """Every HERALD_* variable and --flag the chart sets is one the subcommand has."""
    for _, obj in objects:
        if obj["kind"] != "Deployment":
            continue
        component = obj["metadata"]["labels"].get("app.kubernetes.io/component")
        for container in obj["spec"]["template"]["spec"]["containers"]:
            if container["name"] != "herald":
                continue
            args = container.get("args") or []
            subcommand = args[0] if args else None
            if subcommand != SUBCOMMANDS.get(component):
                fail(case, f"{obj['metadata']['name']}: subcommand {subcommand!r} for component {component!r}")
                continue
            text = herald_help(binary, subcommand)
            for env in container.get("env") or []:
                name = env["name"]
                if name.startswith("HERALD_") and f"[env: {name}=" not in text and f"[env: {name}]" not in text:
                    fail(case, f"{obj['metadata']['name']}: herald {subcommand} has no {name}")
            for arg in args[1:]:
                flag = arg.split("=", 1)[0]
                if flag.startswith("--") and not re.search(rf"^\s+{re.escape(flag)}\b", text, re.M):
                    fail(case, f"{obj['metadata']['name']}: herald {subcommand} has no {flag}")


def validate(case, objects, work):
    builtin = []
    crds = {}
    for _, obj in objects:
        schema = CRD_SCHEMAS.get((obj["apiVersion"], obj["kind"]))
        if schema:
            crds.setdefault(schema, []).append(obj)
        else:
            builtin.append(obj)
    for name, items in crds.items():
        schema = json.loads((SCHEMAS / name).read_text())
        for obj in items:
            errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
            for error in errors:
                where = "/".join(str(p) for p in error.path)
                fail(case, f"{obj['kind']} {obj['metadata']['name']}: {where}: {error.message}")
        print(f"  valid: {len(items)} {items[0]['kind']} against scripts/deploy-schemas/{name}")
    path = Path(work) / (case.replace("/", "-") + ".yaml")
    path.write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    result = subprocess.run(
        [VALIDATE, "--strict", "--quiet", "-k", KUBE_VERSION, str(path)], capture_output=True, text=True
    )
    output = (result.stdout + result.stderr).strip()
    # --quiet prints only findings; a missing schema is only a warning there.
    if result.returncode != 0 or output:
        fail(case, f"kubernetes-validate --strict:\n{output}")
    else:
        print(f"  valid: {len(builtin)} objects, Kubernetes {KUBE_VERSION}, strict")


def main():
    binary = os.environ.get("HERALD_BIN", "")
    cases = [("default", {})]
    for example in sorted((CHART / "examples").glob("*.yaml")):
        cases.append((f"examples/{example.stem}", yaml.safe_load(example.read_text()) or {}))
    with tempfile.TemporaryDirectory() as work:
        chart = chart_copy(work)
        for case, values in cases:
            print(f"deploy/helm/herald {case}")
            lint(case, chart, values)
            try:
                objects = render(case, chart, values)
            except helm.HelmError as error:
                fail(case, f"render: {error}")
                continue
            kinds = sorted({obj["kind"] for _, obj in objects})
            print(f"  rendered: {len(objects)} objects ({', '.join(kinds)})")
            check_unique(case, objects)
            check_contents(case, objects)
            if binary:
                check_flags(case, objects, binary)
            validate(case, objects, work)
    if binary:
        print(f"flags and HERALD_* variables checked against {binary} --help")
    else:
        print("HERALD_BIN not set: flags and variables not checked against the binary")
    if failures:
        print(f"\n{len(failures)} problem(s) in deploy/helm/herald", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
