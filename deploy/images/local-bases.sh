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
# written here) and loaded with `docker import` (deploy/scripts/debian.sh, shared with the sandbox
# image).
#
# Environment: BASE_SUITE (default bookworm), BASE_APT_SOURCES (default: the host's sources file).
set -euo pipefail

SUITE=${BASE_SUITE:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What usrmerge leaves behind once the layout is merged.
PERL="libfile-find-rule-perl libnumber-compare-perl libtext-glob-perl perl libperl5.36 perl-modules-5.36"

log() { echo "local-bases: $*" >&2; }
# shellcheck source=deploy/scripts/debian.sh
source "$HERE/../scripts/debian.sh"
APT_SOURCES=${BASE_APT_SOURCES:-${APT_SOURCES:-}}
DEBIAN_SUITE=$SUITE

present() { [ "${FORCE:-0}" != 1 ] && docker image inspect "$1" >/dev/null 2>&1; }

# debootstrap_import TAG PACKAGES PURGE [docker import --change ...]: debian_image unless present.
debootstrap_import() {
    if present "$1"; then
        log "$1 already present"
        return
    fi
    debian_image "$@"
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
