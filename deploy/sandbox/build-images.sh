#!/usr/bin/env bash
# Builds the sandbox runtime image (Python 3, Node.js, Bash) that sandbox-service runs code in.
#
#   bash deploy/sandbox/build-images.sh            # builds $SANDBOX_IMAGE when missing or stale
#   FORCE=1 bash deploy/sandbox/build-images.sh    # rebuilds it (and the local base)
#
# Environment:
#   SANDBOX_IMAGE        tag to build (default autocrea/sandbox-runtime:1; the service reads the same variable)
#   SANDBOX_BASE_IMAGE   a registry base such as debian:bookworm-slim; when unset, the base is created
#                        from Debian packages with mmdebstrap and `docker import` (no registry needed)
#   SANDBOX_APT_SOURCES  apt sources file for mmdebstrap (default: the host's own debian.sources or
#                        sources.list, so no mirror is hard-coded here)
#   SANDBOX_SUITE        Debian suite (default bookworm)
#
# Idempotent and fast when the image is up to date: it only runs `docker image inspect`. An image
# is up to date when its org.autocrea.sandbox.content label holds the hash of this directory's
# files (Dockerfile, supervisor, runners); any change to them rebuilds it.
set -euo pipefail

IMAGE=${SANDBOX_IMAGE:-autocrea/sandbox-runtime:1}
SUITE=${SANDBOX_SUITE:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOCAL_BASE="autocrea/sandbox-base:${SUITE}"

log() { echo "build-images: $*" >&2; }

# shellcheck source=deploy/scripts/debian.sh
source "$HERE/../scripts/debian.sh"
APT_SOURCES=${SANDBOX_APT_SOURCES:-${APT_SOURCES:-}}
DEBIAN_SUITE=$SUITE

CONTENT=$(cd "$HERE" && cat Dockerfile supervisor.py runner.js stats | sha256sum | cut -c1-16)
if [ "${FORCE:-0}" != 1 ] \
    && [ "$(docker image inspect -f '{{index .Config.Labels "org.autocrea.sandbox.content"}}' "$IMAGE" 2>/dev/null)" = "$CONTENT" ]; then
    log "$IMAGE already present and up to date"
    exit 0
fi

# The base image without a registry: a minimal Debian root filesystem with the interpreters.
build_local_base() {
    if [ "${FORCE:-0}" != 1 ] && docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        log "base $LOCAL_BASE already present"
        return
    fi
    debian_image "$LOCAL_BASE" python3,nodejs "" --change 'CMD ["bash"]'
}

if [ -n "${SANDBOX_BASE_IMAGE:-}" ]; then
    BASE=$SANDBOX_BASE_IMAGE
else
    build_local_base
    BASE=$LOCAL_BASE
fi

# The classic builder resolves FROM against local images without contacting a registry.
export DOCKER_BUILDKIT=0
log "building $IMAGE from $BASE"
first=$(docker build -q --build-arg "BASE_IMAGE=$BASE" --build-arg "CONTENT=$CONTENT" -t "$IMAGE" "$HERE" 2>/dev/null)

# Measure the interpreter versions of the built image and record them as labels (second build is
# cached up to the LABEL layer).
versions=$(docker run --rm --network none "$IMAGE" \
    sh -c 'python3 -c "import platform; print(platform.python_version())"; node -p "process.versions.node"; bash -c "echo \${BASH_VERSINFO[0]}.\${BASH_VERSINFO[1]}.\${BASH_VERSINFO[2]}"')
py=$(sed -n 1p <<<"$versions")
node=$(sed -n 2p <<<"$versions")
bash_v=$(sed -n 3p <<<"$versions")
docker build -q --build-arg "BASE_IMAGE=$BASE" --build-arg "CONTENT=$CONTENT" \
    --build-arg "PYTHON_VERSION=$py" --build-arg "NODE_VERSION=$node" --build-arg "BASH_VERSION=$bash_v" \
    -t "$IMAGE" "$HERE" >/dev/null 2>&1
# The first build is now untagged; drop it unless the label build changed nothing.
if [ "$(docker image inspect -f '{{.Id}}' "$IMAGE")" != "$first" ]; then
    docker image rm "$first" >/dev/null 2>&1 || true
fi
log "built $IMAGE (python $py, node $node, bash $bash_v)"
