#!/usr/bin/env bash
# Checks the Prometheus rules and the Grafana dashboards under deploy/monitoring:
#   1. `promtool check rules` and `promtool test rules` (a firing and a silent case per alert);
#   2. deploy/k8s/monitoring/prometheusrule.yaml (for the Prometheus Operator) holds exactly the
#      groups of deploy/monitoring/alerts.yml; `--write` regenerates it after a rules change;
#   3. every dashboard is valid JSON with a title, a uid and panels that all have queries.
# That every metric the rules and dashboards name is exported is checked against a live scrape by
# the test suite (tests/quickstart.rs, the all-in-one binary).
#
#   bash deploy/scripts/check-monitoring.sh [--write]
#
# promtool comes from Debian's prometheus package, installed when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log() { echo "check-monitoring: $*" >&2; }
# shellcheck source=deploy/scripts/debian.sh
source deploy/scripts/debian.sh

if ! command -v promtool >/dev/null; then
    log "installing promtool (Debian's prometheus package)"
    apt_install prometheus
fi

promtool check rules deploy/monitoring/alerts.yml
(cd deploy/monitoring && promtool test rules alerts.test.yml)

rule=deploy/k8s/monitoring/prometheusrule.yaml
expected=$(
    cat <<'HEADER'
# Generated from deploy/monitoring/alerts.yml by deploy/scripts/check-monitoring.sh --write: edit
# that file, not this one. For clusters with the Prometheus Operator:
#   kubectl apply -n autocrea -f deploy/k8s/monitoring/prometheusrule.yaml
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: autocrea
  labels:
    app.kubernetes.io/part-of: autocrea
spec:
HEADER
    sed -n '/^groups:/,$p' deploy/monitoring/alerts.yml | sed 's/^/  /'
)
if [ "${1:-}" = --write ]; then
    printf '%s\n' "$expected" >"$rule"
    log "wrote $rule"
elif ! diff -u "$rule" <(printf '%s\n' "$expected") >&2; then
    log "$rule does not match deploy/monitoring/alerts.yml: run bash deploy/scripts/check-monitoring.sh --write"
    exit 1
fi

python3 - deploy/monitoring/dashboards/*.json <<'PY'
import json, sys
for path in sys.argv[1:]:
    with open(path) as f:
        board = json.load(f)
    assert board.get("title") and board.get("uid"), f"{path}: a dashboard needs a title and a uid"
    panels = [p for p in board.get("panels", []) if p.get("type") != "row"]
    assert panels, f"{path}: no panels"
    for panel in panels:
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr") for t in targets), f"{path}: panel {panel.get('title')!r} has no query"
PY
log "rules, their tests, the PrometheusRule and $(find deploy/monitoring/dashboards -name '*.json' | wc -l) dashboards are in order"
