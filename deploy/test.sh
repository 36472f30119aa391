#!/usr/bin/env bash
# The test command: sets up what the suite needs on this machine, then runs the whole suite.
#
#   bash deploy/test.sh              # everything
#   bash deploy/test.sh -p gateway   # extra arguments go to `cargo nextest run`
#   bash deploy/test.sh --coverage   # the same suite, instrumented: line coverage per crate and in
#                                    # total, and a failure when the total is under 80 % or a
#                                    # service crate under 70 % (report under target/coverage/)
#
# It installs and starts PostgreSQL and Redis on loopback when absent (Debian packages), builds
# the sandbox runtime image when missing (no registry needed), installs headless Chromium for the
# browser tests when absent (Debian package), builds the workspace once, and runs every test
# binary with cargo-nextest. Nothing is skipped: tests that need PostgreSQL, Redis or
# Docker fail when they are missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { echo "test: $*" >&2; }

# PostgreSQL and Redis (exports TEST_DATABASE_URL and TEST_REDIS_URL).
# shellcheck source=deploy/scripts/test-services.sh
source deploy/scripts/test-services.sh
log "PostgreSQL at $TEST_DATABASE_URL, Redis at $TEST_REDIS_URL"

# The Docker engine and the sandbox runtime image.
if ! docker info >/dev/null 2>&1; then
    log "the Docker engine does not answer; the sandbox tests need it"
    exit 1
fi
bash deploy/sandbox/build-images.sh

# Headless Chromium for the browser tests (gateway/tests/api/browser.rs).
if [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    log "installing Chromium from Debian's packages (browser tests)"
    apt_install chromium
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io"
    cargo install cargo-nextest --locked
fi

coverage=0
if [ "${1:-}" = --coverage ]; then
    coverage=1
    shift
fi
if [ "$coverage" = 0 ]; then
    exec cargo nextest run --workspace --profile ci "$@"
fi

# ---- coverage ---------------------------------------------------------------------------------
# cargo-llvm-cov builds the suite with `-C instrument-coverage` (in target/llvm-cov-target) and
# runs it with nextest. It needs llvm-profdata and llvm-cov: rustup's llvm-tools component when
# installed, otherwise Debian's LLVM 19, whose tools read what this toolchain writes.
CARGO_LLVM_COV_VERSION=0.9.1
if ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    llvm_bin=""
    for d in /usr/lib/llvm-2[0-9]/bin /usr/lib/llvm-19/bin; do
        if [ -x "$d/llvm-cov" ] && [ -x "$d/llvm-profdata" ]; then llvm_bin=$d; fi
    done
    if [ -z "$llvm_bin" ]; then
        log "installing LLVM 19 from Debian's packages (llvm-cov, llvm-profdata)"
        apt_install llvm-19
        llvm_bin=/usr/lib/llvm-19/bin
    fi
    export LLVM_COV=$llvm_bin/llvm-cov LLVM_PROFDATA=$llvm_bin/llvm-profdata
fi
if ! cargo llvm-cov --version 2>/dev/null | grep -q "$CARGO_LLVM_COV_VERSION"; then
    log "installing cargo-llvm-cov $CARGO_LLVM_COV_VERSION from crates.io"
    cargo install cargo-llvm-cov --locked --version "$CARGO_LLVM_COV_VERSION"
fi

# Not counted: generated code (the proto crate), test suites, test helpers and fixtures.
ignore='(^|/)(proto|tests|benches|examples|fake-providers)/|/src/testing\.rs$'
out=target/coverage
rm -rf "$out"
mkdir -p "$out"
cargo llvm-cov clean --workspace
cargo llvm-cov nextest --workspace --profile ci --no-report "$@"
# `report` counts only the root package unless every workspace member is named.
mapfile -t packages < <(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; [print("-p", p["name"]) for p in json.load(sys.stdin)["packages"]]')
read -r -a package_args <<<"${packages[*]}"
cargo llvm-cov report "${package_args[@]}" --ignore-filename-regex "$ignore" --lcov --output-path "$out/lcov.info"
cargo llvm-cov report "${package_args[@]}" --ignore-filename-regex "$ignore" --html --output-dir "$out"
log "HTML report: $out/html/index.html"
python3 deploy/scripts/coverage-summary.py "$out/lcov.info" --markdown "$out/summary.md" \
    --total-min 80 --crate-min 70
