#!/usr/bin/env bash
# Renders every kustomize overlay under deploy/k8s/overlays and validates the output:
#   1. against the Kubernetes OpenAPI schemas, strictly (unknown fields fail), with
#      kubernetes-validate from PyPI, which ships the schemas (no network at validation time);
#   2. against this project's rules (non-root, read-only root, no escalation, drop ALL, probes,
#      requests and limits, a PDB per Deployment, HPAs for gateway and ai-service, default-deny
#      NetworkPolicy, an Ingress to the gateway's http port only, /metrics and /ready on their own
#      port, no HS256 development secret outside the dev overlay).
#
#   bash deploy/scripts/validate-k8s.sh
#
# Rendering uses `kustomize build` when present, else `kubectl kustomize` (kustomize built in).
# K8S_VERSIONS (default "1.29.0 1.37.0"): schema versions to validate against, oldest supported
# and newest known.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/scripts/tools.sh
source deploy/scripts/tools.sh
tools_install kubernetes-validate

log() { echo "validate-k8s: $*" >&2; }

render() {
    if command -v kustomize >/dev/null; then
        kustomize build "$1"
    elif command -v kubectl >/dev/null; then
        kubectl kustomize "$1"
    else
        log "neither kustomize nor kubectl is installed (Debian: apt-get install kubectl)"
        exit 1
    fi
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    render "$overlay" >"$out/$name.yaml"
    count=$(grep -c '^kind:' "$out/$name.yaml")
    for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
        if "$TOOLS_BIN/kubernetes-validate" --strict --quiet -k "$version" "$out/$name.yaml"; then
            log "$name: $count objects valid against Kubernetes $version (strict)"
        else
            log "$name: schema validation FAILED against Kubernetes $version"
            status=1
        fi
    done
    if "$TOOLS_BIN/python" - "$out/$name.yaml" <<'PY'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
problems = []
services = ["gateway", "ai-service", "deploy-service", "project-service", "sandbox-service"]
for name in services:
    dep = by_kind.get("Deployment", {}).get(name)
    if dep is None:
        problems.append(f"Deployment {name} missing")
        continue
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if not psc.get("runAsNonRoot") or psc.get("runAsUser", 0) == 0:
        problems.append(f"{name}: pod must run as non-root")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{name}: service account token must not be mounted")
    for c in pod["containers"]:
        sc = c.get("securityContext", {})
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}/{c['name']}: readOnlyRootFilesystem")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            problems.append(f"{name}/{c['name']}: capabilities must drop ALL")
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in c:
                problems.append(f"{name}/{c['name']}: no {probe}")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(part, {})):
                problems.append(f"{name}/{c['name']}: resources.{part} needs cpu and memory")
    if name not in by_kind.get("Service", {}):
        problems.append(f"Service {name} missing")
    if name not in by_kind.get("PodDisruptionBudget", {}):
        problems.append(f"PodDisruptionBudget {name} missing")
for name in ("gateway", "ai-service"):
    if name not in by_kind.get("HorizontalPodAutoscaler", {}):
        problems.append(f"HorizontalPodAutoscaler {name} missing")
nps = by_kind.get("NetworkPolicy", {}).values()
if not any(np["spec"].get("podSelector") == {} and "ingress" not in np["spec"] for np in nps):
    problems.append("no default-deny ingress NetworkPolicy")
backends = [p["backend"]["service"]["name"]
            for ing in by_kind.get("Ingress", {}).values()
            for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
if set(backends) != {"gateway"}:
    problems.append(f"the Ingress must route to the gateway only, routes to {backends}")
ports = {p["backend"]["service"]["port"].get("name")
         for ing in by_kind.get("Ingress", {}).values()
         for r in ing["spec"]["rules"] for p in r["http"]["paths"]}
if ports != {"http"}:
    problems.append(f"the Ingress must route only the gateway's http port (not metrics), routes {ports}")
config = {}
for cm in by_kind.get("ConfigMap", {}).values():
    config.update(cm.get("data") or {})
if not config.get("GATEWAY_METRICS_ADDR"):
    problems.append("GATEWAY_METRICS_ADDR must move /metrics and /ready off the public listener")
overlay = sys.argv[1].rsplit("/", 1)[-1].removesuffix(".yaml")
for dep in by_kind.get("Deployment", {}).values():
    for c in dep["spec"]["template"]["spec"]["containers"]:
        wired = [e["name"] for e in c.get("env", []) if e["name"] == "AUTH_HS256_SECRET"]
        if wired and overlay != "dev":
            problems.append(f"{dep['metadata']['name']}: HS256 development secret wired outside the dev overlay")
for p in problems:
    print("  rule:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
        log "$name: project rules hold"
    else
        log "$name: project rules FAILED"
        status=1
    fi
done
exit "$status"
