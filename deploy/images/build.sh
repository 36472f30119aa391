#!/usr/bin/env bash
# Builds the five service images from binaries compiled on the host once, without any registry,
# checks that each runs as the non-root user, and prints their sizes. Also builds the test fixture
# autocrea/fake-providers (deploy/images/fake-providers/Dockerfile: fake Anthropic and Vercel APIs
# for the compose end-to-end stack); it is never pushed or deployed.
#
#   bash deploy/images/build.sh                # cargo build (once), then the images
#   SKIP_CARGO=1 bash deploy/images/build.sh   # use target/release as it is
#
# Environment:
#   IMAGE_PREFIX  image name prefix (default autocrea/) → autocrea/gateway, autocrea/ai-service, …
#   IMAGE_TAG     tag besides `latest` (default: the short git revision)
#   BASE_IMAGE    runtime base; when unset, autocrea/runtime-base:bookworm is made from Debian
#                 packages by deploy/images/local-bases.sh (no registry needed)
#
# Idempotent: unchanged binaries reuse every cached layer (labels carry the commit time, not the
# build time), so a second run only re-checks. The images are the Dockerfile's `prebuilt` target:
# the same runtime layers as the default target, which compiles inside Docker.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

SERVICES=(gateway ai-service deploy-service project-service sandbox-service)
FIXTURES=(fake-providers)
PREFIX=${IMAGE_PREFIX:-autocrea/}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
TAG=${IMAGE_TAG:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo dev)}
CREATED=$(git log -1 --format=%cI 2>/dev/null || echo "")
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)

log() { echo "images: $*" >&2; }
mb() { awk '{printf "%.1f MB", $1/1e6}'; }

if [ "${SKIP_CARGO:-0}" != 1 ]; then
    # The services, the all-in-one binary and the fake-providers fixture in one build (the fixture
    # depends on no service, so nothing of it reaches them).
    log "cargo build --release --workspace --bins"
    cargo build --release --workspace --bins
fi
for svc in "${SERVICES[@]}" "${FIXTURES[@]}"; do
    [ -x "target/release/$svc" ] || { log "target/release/$svc is missing"; exit 1; }
done

if [ -z "${BASE_IMAGE:-}" ]; then
    bash deploy/images/local-bases.sh runtime
    BASE_IMAGE=autocrea/runtime-base:bookworm
fi

# Each image gets a context holding only what the Dockerfile copies, at the same paths as in the
# repository, so the upload stays small.
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/deploy/images" "$stage/target/release"
cp deploy/images/healthcheck.sh "$stage/deploy/images/"

# The classic builder resolves FROM against local images and never contacts a registry.
export DOCKER_BUILDKIT=0
for svc in "${SERVICES[@]}"; do
    rm -f "$stage/target/release/"*
    cp -p "target/release/$svc" "$stage/target/release/$svc"
    log "building ${PREFIX}$svc:$TAG"
    docker build -q -f deploy/images/Dockerfile --target prebuilt \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "SERVICE=$svc" \
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
        --build-arg "CREATED=$CREATED" \
        -t "${PREFIX}$svc:$TAG" -t "${PREFIX}$svc:latest" "$stage" >/dev/null
done
for fixture in "${FIXTURES[@]}"; do
    rm -f "$stage/target/release/"*
    cp -p "target/release/$fixture" "$stage/target/release/$fixture"
    log "building ${PREFIX}$fixture:$TAG (test fixture)"
    docker build -q -f "deploy/images/$fixture/Dockerfile" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
        --build-arg "CREATED=$CREATED" \
        -t "${PREFIX}$fixture:$TAG" -t "${PREFIX}$fixture:latest" "$stage" >/dev/null
done

# The non-root check: the configured user, and what the process really runs as.
for svc in "${SERVICES[@]}" "${FIXTURES[@]}"; do
    image="${PREFIX}$svc:$TAG"
    user=$(docker image inspect -f '{{.Config.User}}' "$image")
    ids=$(docker run --rm --network none --entrypoint id "$image")
    case "$user|$ids" in
        10001:10001\|uid=10001\(autocrea\)\ gid=10001\(autocrea\)*) ;;
        *) log "FAIL: $image runs as '$ids' (User '$user'); expected uid 10001"; exit 1 ;;
    esac
    health=$(docker image inspect -f '{{json .Config.Healthcheck.Test}}' "$image")
    [ "$health" != null ] || { log "FAIL: $image has no HEALTHCHECK"; exit 1; }
done
log "all images run as uid 10001 (non-root) and declare a HEALTHCHECK"

base_size=$(docker image inspect -f '{{.Size}}' "$BASE_IMAGE")
printf '%-40s %10s %12s\n' image size "beyond base"
printf '%-40s %10s %12s\n' "$BASE_IMAGE" "$(mb <<<"$base_size")" "-"
for svc in "${SERVICES[@]}" "${FIXTURES[@]}"; do
    size=$(docker image inspect -f '{{.Size}}' "${PREFIX}$svc:$TAG")
    printf '%-40s %10s %12s\n' "${PREFIX}$svc:$TAG" "$(mb <<<"$size")" "$(mb <<<"$((size - base_size))")"
done
