#!/usr/bin/env bash
# The test command: sets up what the suite needs on this machine, then runs the whole suite.
#
#   bash deploy/test.sh              # everything
#   bash deploy/test.sh -p gateway   # extra arguments go to `cargo nextest run`
#
# It installs and starts PostgreSQL and Redis on loopback when absent (Debian packages), builds
# the sandbox runtime image when missing (no registry needed), builds the workspace once, and runs
# every test binary with cargo-nextest. Nothing is skipped: tests that need PostgreSQL, Redis or
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

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io"
    cargo install cargo-nextest --locked
fi

cargo nextest run --workspace --profile ci "$@"
