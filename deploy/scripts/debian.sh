# shellcheck shell=bash
# Sourced by the scripts that install Debian packages on the host or make Debian root filesystems
# into local images (no registry): one copy of each of those steps.
#
#   source deploy/scripts/debian.sh
#   apt_install wrk nginx
#   debian_image autocrea/runtime-base:bookworm ca-certificates,curl "" --change 'CMD ["bash"]'
#
# Callers define `log`. DEBIAN_SUITE (default bookworm) is the suite of the images; APT_SOURCES
# names an apt sources file for mmdebstrap (default: the host's own, so no mirror is written down).

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE...: installs from the host's apt sources, updating the lists once per run.
apt_install() {
    if [ -z "${_DEBIAN_APT_UPDATED:-}" ]; then
        as_root apt-get update -qq
        _DEBIAN_APT_UPDATED=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The apt sources file mmdebstrap reads: $APT_SOURCES, else the host's.
host_apt_sources() {
    if [ -n "${APT_SOURCES:-}" ]; then
        echo "$APT_SOURCES"
        return
    fi
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$f" ] && grep -Eq '^[[:space:]]*(deb|Types:|URIs:)' "$f"; then
            echo "$f"
            return
        fi
    done
    log "no apt sources found on this host; set APT_SOURCES to an apt sources file"
    exit 1
}

# debian_image TAG PACKAGES PURGE [docker import --change ...]
# A minimal Debian root filesystem with PACKAGES (comma-separated), made with mmdebstrap and loaded
# with `docker import`; PURGE names packages to remove again ("" for none). Docs, man pages and
# locales are left out: nothing in our images reads them.
debian_image() {
    local tag=$1 packages=$2 purge=$3
    shift 3
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    local sources work
    sources=$(host_apt_sources)
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    local hooks=()
    if [ -n "$purge" ]; then
        hooks+=(--customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get purge -qq -y $purge >/dev/null")
    fi
    log "creating $tag with mmdebstrap from $sources ($packages)"
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
        "${DEBIAN_SUITE:-bookworm}" "$work/rootfs.tar" "$sources"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "$@" "$work/rootfs.tar" "$tag" >/dev/null
    log "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.1f MB", $1/1e6}'))"
}
