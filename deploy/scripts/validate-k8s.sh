#!/usr/bin/env bash
# Renders every kustomize overlay under deploy/k8s/overlays and validates the output:
#   1. against the Kubernetes OpenAPI schemas, strictly (unknown fields fail), with
#      kubernetes-validate from PyPI, which ships the schemas (no network at validation time);
#   2. against this project's rules (non-root, read-only root, no escalation, drop ALL, probes,
#      requests and limits, a PDB per Deployment, HPAs for gateway and ai-service, default-deny
#      ingress and egress NetworkPolicies in every namespace, internet egress on 443 only and only
#      for the gateway, ai-service, deploy-service and the sandbox engine's image pulls, an Ingress
#      to the gateway's http port only, /metrics and /ready on their own port, no HS256
#      development secret outside the dev overlay; the signing key on the gateway alone and the
#      public key on every service; the sandbox engine a rootless sidecar of sandbox-service
#      reached over a unix socket on a volume of that pod, in its own namespace, on gVisor in
#      prod, and the only privileged container);
#   3. the documented alternative, deploy/k8s/sandbox/remote-engine (a remote engine over TLS with
#      a client certificate), rendered onto the sandbox and held to the same schemas and to its
#      own rules (no sidecar, TLS on, certificates from a Secret, egress to the engine only).
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

# validate NAME FILE: FILE against the Kubernetes schemas of every version, strictly.
validate() {
    local version
    for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
        if "$TOOLS_BIN/kubernetes-validate" --strict --quiet -k "$version" "$2"; then
            log "$1: valid against Kubernetes $version (strict)"
        else
            log "$1: schema validation FAILED against Kubernetes $version"
            status=1
        fi
    done
}
for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    render "$overlay" >"$out/$name.yaml"
    validate "$name ($(grep -c '^kind:' "$out/$name.yaml") objects)" "$out/$name.yaml"
    if "$TOOLS_BIN/python" - "$out/$name.yaml" <<'PY'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
overlay_name = sys.argv[1].rsplit("/", 1)[-1].removesuffix(".yaml")
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
        engine = (name, c["name"]) == ("sandbox-service", "engine")
        if engine:
            # The one privileged container: rootless dockerd, never as root.
            if sc.get("runAsNonRoot") is not True or sc.get("runAsUser", 0) == 0:
                problems.append("sandbox-service/engine: the engine must run rootless (non-root user)")
        else:
            if sc.get("privileged"):
                problems.append(f"{name}/{c['name']}: only the sandbox engine may be privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: allowPrivilegeEscalation")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}/{c['name']}: capabilities must drop ALL")
        env_names = {e["name"] for e in c.get("env", [])}
        if not engine:
            wanted = "IDENTITY_SIGNING_KEY" if name == "gateway" else "IDENTITY_PUBLIC_KEY"
            if wanted not in env_names:
                problems.append(f"{name}/{c['name']}: {wanted} not wired")
        if name != "gateway" and "IDENTITY_SIGNING_KEY" in env_names:
            problems.append(f"{name}/{c['name']}: only the gateway may hold IDENTITY_SIGNING_KEY")
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
all_nps = [d for d in docs if d["kind"] == "NetworkPolicy"]
namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] == "Deployment"}
for ns in namespaces:
    nps = [np for np in all_nps if np["metadata"].get("namespace") == ns]
    if not any(np["spec"].get("podSelector") == {} and {"Ingress", "Egress"} <= set(np["spec"].get("policyTypes", []))
               and "ingress" not in np["spec"] and "egress" not in np["spec"] for np in nps):
        problems.append(f"namespace {ns}: no default-deny NetworkPolicy for ingress and egress")
def selects(np, name):
    sel = np["spec"].get("podSelector", {})
    if sel == {}:
        return True
    if sel.get("matchLabels", {}).get("app.kubernetes.io/name") == name:
        return True
    return any(e.get("key") == "app.kubernetes.io/name" and name in e.get("values", [])
               for e in sel.get("matchExpressions", []))
for np in all_nps:
    for rule in np["spec"].get("egress", []):
        wide = [t for t in rule.get("to", []) if t.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"]
        if not wide:
            continue
        ports = {p.get("port") for p in rule.get("ports", [])}
        if ports != {443}:
            problems.append(f"NetworkPolicy {np['metadata']['name']}: internet egress on ports {ports}, not 443 only")
internet = {name for name in services for np in all_nps if selects(np, name)
            and np["spec"].get("podSelector") != {}
            and any(t.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for r in np["spec"].get("egress", []) for t in r.get("to", []))}
if internet != {"gateway", "ai-service", "deploy-service", "sandbox-service"}:
    problems.append(f"internet egress for {sorted(internet)}: expected the gateway (JWKS), ai-service, deploy-service and the sandbox engine (image pulls)")
# The sandbox engine: a sidecar reached over a unix socket on a volume of the pod, in a namespace
# of its own, never a TCP address; on gVisor in prod.
sandbox = by_kind.get("Deployment", {}).get("sandbox-service")
if sandbox is not None:
    pod = sandbox["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["containers"]]
    if "engine" not in names:
        problems.append("sandbox-service: no engine sidecar")
    socket_mounts = [
        {m["name"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/run/engine"}
        for c in pod["containers"]]
    if len(socket_mounts) != 2 or not socket_mounts[0] or socket_mounts[0] != socket_mounts[1]:
        problems.append("sandbox-service: the engine socket must be on one volume both containers mount")
    if sandbox["metadata"].get("namespace") in {d["metadata"].get("namespace") for n, d in by_kind.get("Deployment", {}).items() if n != "sandbox-service"}:
        problems.append("sandbox-service: must have a namespace of its own (its engine is privileged)")
    if overlay_name == "prod" and pod.get("runtimeClassName") != "gvisor":
        problems.append("sandbox-service: prod runs the sandbox pod on gVisor (runtimeClassName gvisor)")
hosts = [v for cm in by_kind.get("ConfigMap", {}).values() for k, v in (cm.get("data") or {}).items() if k == "DOCKER_HOST"]
if not hosts or any(not h.startswith("unix://") for h in hosts):
    problems.append(f"DOCKER_HOST must be the sidecar's unix socket, is {hosts}")
for svc in by_kind.get("Service", {}).values():
    if any(p.get("port") in (2375, 2376) for p in svc["spec"].get("ports", [])):
        problems.append(f"Service {svc['metadata']['name']}: exposes a Docker engine port")
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
# The remote-engine component, rendered onto the sandbox in a throwaway kustomization (kustomize
# takes only relative paths, so it lives in the tree while it is used).
remote=$(mktemp -d -p deploy/k8s .remote-engine-check.XXXX)
trap 'rm -rf "$out" "$remote"' EXIT
cat >"$remote/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: autocrea-sandbox
resources:
  - ../sandbox
components:
  - ../sandbox/remote-engine
YAML
render "$remote" >"$out/remote-engine.yaml"
validate remote-engine "$out/remote-engine.yaml"
if "$TOOLS_BIN/python" - "$out/remote-engine.yaml" <<'PY'; then
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
problems = []
dep = next(d for d in docs if d["kind"] == "Deployment")
pod = dep["spec"]["template"]["spec"]
if [c["name"] for c in pod["containers"]] != ["sandbox-service"]:
    problems.append("remote engine: the sidecar must be gone")
env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
if env.get("DOCKER_TLS_VERIFY") != "1" or not env.get("DOCKER_CERT_PATH"):
    problems.append("remote engine: TLS must be on (DOCKER_TLS_VERIFY, DOCKER_CERT_PATH)")
mounts = {m["mountPath"]: m for m in pod["containers"][0].get("volumeMounts", [])}
tls = mounts.get(env.get("DOCKER_CERT_PATH") or "")
volumes = {v["name"]: v for v in pod.get("volumes", [])}
if not tls or not tls.get("readOnly") or "secret" not in volumes.get(tls["name"], {}):
    problems.append("remote engine: the client certificate must be a read-only Secret mount")
if any(v["name"].startswith("engine-") and v["name"] != "engine-tls" for v in pod.get("volumes", [])):
    problems.append("remote engine: the sidecar's volumes must be gone")
hosts = [d["data"]["DOCKER_HOST"] for d in docs if d["kind"] == "ConfigMap" and "DOCKER_HOST" in d.get("data", {})]
if not hosts or not all(h.startswith("tcp://") for h in hosts):
    problems.append(f"remote engine: DOCKER_HOST must be tcp:// (with TLS), is {hosts}")
to_engine = [r for d in docs if d["kind"] == "NetworkPolicy" for r in d["spec"].get("egress", [])
             if {p.get("port") for p in r.get("ports", [])} == {2376}]
if not to_engine or any(t.get("ipBlock", {}).get("cidr", "").endswith("/0") for r in to_engine for t in r.get("to", [])):
    problems.append("remote engine: egress to the engine host only, on 2376")
for p in problems:
    print("  rule:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
    log "remote-engine: project rules hold"
else
    log "remote-engine: project rules FAILED"
    status=1
fi
exit "$status"
