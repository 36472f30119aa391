#!/usr/bin/env bash
# Creates, without any image registry, the base images that the service images and the CI compose
# override build on:
#
#   autocrea/runtime-base:<suite>   minimal Debian + ca-certificates + curl (the health probe)
#   autocrea/postgres-local:<suite> Debian's postgresql, with an entrypoint that honours the
#                                   official image's POSTGRES_* variables and initdb.d scripts
#   autocrea/redis-local:<suite>    Debian's redis-server
#
#   bash deploy/images/local-bases.sh                 # all three, each only when missing
#   bash deploy/images/local-bases.sh runtime         # just one (runtime | postgres | redis)
#   FORCE=1 bash deploy/images/local-bases.sh         # rebuild
#
# mmdebstrap merges /usr on bookworm with the help of usrmerge, which leaves Perl behind (about
# 35 MB); nothing else needs it, so it is purged.
#
# Each root filesystem is made with mmdebstrap from the host's own apt sources (no mirror is
# written here) and loaded with `docker import`. The logic mirrors deploy/sandbox/build-images.sh,
# duplicated on purpose so that the two images can evolve separately.
#
# Environment: BASE_SUITE (default bookworm), BASE_APT_SOURCES (default: the host's sources file).
set -euo pipefail

SUITE=${BASE_SUITE:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What usrmerge leaves behind once the layout is merged.
PERL="libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36"

log() { echo "local-bases: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

present() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

host_apt_sources() {
    if [ -n "${BASE_APT_SOURCES:-}" ]; then
        echo "$BASE_APT_SOURCES"
        return
    fi
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ] && grep -Eq '^[[:space:]]*(deb|Types:|URIs:)' "$f"; then
            echo "$f"
            return
        fi
    done
    log "no apt sources found on this host; set BASE_APT_SOURCES"
    exit 1
}

# debootstrap_import TAG PACKAGES PURGE [docker import --change ...]
# PURGE: packages to remove again ("" for none).
debootstrap_import() {
    local tag=$1 packages=$2 purge=$3
    shift 3
    if present "$tag"; then
        log "$tag already present"
        return
    fi
    if ! command -v mmdebstrap >/dev/null; then
        log "installing mmdebstrap"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
    fi
    local sources work
    sources=$(host_apt_sources)
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    local hooks=()
    if [ -n "$purge" ]; then
        hooks+=(--customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get purge -qq -y $purge >/dev/null")
    fi
    log "creating $tag with mmdebstrap ($packages)"
    # shellcheck disable=SC2016 # "$1" is the hook's argument, expanded by mmdebstrap's shell
    as_root mmdebstrap --quiet --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --aptopt='APT::Install-Recommends "false"' \
        "${hooks[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
        "$SUITE" "$work/rootfs.tar" "$sources"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$@" "$work/rootfs.tar" "$tag" >/dev/null
    log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
}

runtime() {
    debootstrap_import "autocrea/runtime-base:$SUITE" ca-certificates,curl "$PERL" --change 'CMD ["bash"]'
}

# Debian's server packages inside a tiny image layer that adds the entrypoint; the classic builder
# resolves FROM against local images, so nothing is pulled.
postgres() {
    local tag="autocrea/postgres-local:$SUITE"
    if present "$tag"; then
        log "$tag already present"
        return
    fi
    # postgresql-common is written in Perl: keep it here.
    debootstrap_import "autocrea/postgres-rootfs:$SUITE" postgresql ''
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=autocrea/postgres-rootfs:$SUITE" \
        -t "$tag" "$HERE/postgres-local" >/dev/null
    log "built $tag"
}

redis() {
    local tag="autocrea/redis-local:$SUITE"
    if present "$tag"; then
        log "$tag already present"
        return
    fi
    debootstrap_import "autocrea/redis-rootfs:$SUITE" redis-server "$PERL"
    DOCKER_BUILDKIT=0 docker build -q --build-arg "BASE_IMAGE=autocrea/redis-rootfs:$SUITE" \
        -t "$tag" "$HERE/redis-local" >/dev/null
    log "built $tag"
}

if [ $# -eq 0 ]; then set -- runtime postgres redis; fi
for what in "$@"; do
    case $what in
        runtime | postgres | redis) "$what" ;;
        *) log "unknown base '$what' (runtime | postgres | redis)"; exit 2 ;;
    esac
done
