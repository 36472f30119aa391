# shellcheck shell=bash
# Sourced by the benchmark scripts (run from the repository root): a scratch directory `$work` and
# the background processes recorded in `pid[NAME]`, both gone when the script exits; `machine`
# describes this machine for the reports; `apt_install` and friends from deploy/scripts/debian.sh.

# shellcheck source=deploy/scripts/debian.sh
source deploy/scripts/debian.sh

work=$(mktemp -d)
declare -A pid=()
cleanup() {
    local p
    for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

machine() {
    echo "nproc: $(nproc)"
    echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -r)"
    echo "docker: $(docker version -f '{{.Server.Version}}') ($(docker info -f '{{.Driver}}, cgroup v{{.CgroupVersion}}' 2>/dev/null))"
    echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
    free -h | sed -n 1,2p
}
