#!/usr/bin/env bash
# HTTP benchmark of the platform spine: requests/s and p50/p95/p99 through the gateway for
# `GET /health` and an authenticated `GET /api/projects/{id}` (gateway → gRPC → project-service →
# SQLite), with the separate release binaries on loopback and wrk as the load generator.
#
#   bash deploy/bench/http.sh                 # 10 s per scenario, 32 connections
#   DURATION=30s CONNECTIONS=64 bash deploy/bench/http.sh
#
# Rate limiting is switched off for the run (RATE_LIMIT_ENABLED=false) so it does not distort the
# figures; logs are at warn so that log output is not what is measured.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
GATEWAY_PORT=${GATEWAY_PORT:-18080}
PROJECT_PORT=${PROJECT_PORT:-18053}

log() { echo "http: $*" >&2; }
# shellcheck source=deploy/bench/common.sh
source deploy/bench/common.sh
command -v wrk >/dev/null || apt_install wrk
cargo build --release -q -p gateway -p project-service

secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
RUST_LOG=warn PROJECT_LISTEN_ADDR=127.0.0.1:$PROJECT_PORT DATABASE_URL="sqlite://$work/project.db?mode=rwc" \
    target/release/project-service >"$work/project.log" 2>&1 &
pid[project]=$!
RUST_LOG=warn GATEWAY_LISTEN_ADDR=127.0.0.1:$GATEWAY_PORT PROJECT_SERVICE_URL=http://127.0.0.1:$PROJECT_PORT \
    AUTH_HS256_SECRET=$secret RATE_LIMIT_ENABLED=false GATEWAY_WORKERS=${GATEWAY_WORKERS:-2} \
    target/release/gateway >"$work/gateway.log" 2>&1 &
pid[gateway]=$!

for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$GATEWAY_PORT/health" >/dev/null && break
    sleep 0.1
done

token=$(AUTH_HS256_SECRET=$secret target/release/gateway token --user bench-user)
project=$(curl -fs -X POST "http://127.0.0.1:$GATEWAY_PORT/api/projects" \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d '{"name":"bench","language":"typescript"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

run() {
    local name=$1; shift
    # Warm-up, then the measured run.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "$@" >/dev/null
    local line
    line=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s deploy/bench/report.lua "$@" | grep '^RESULT')
    printf '%-34s %s\n' "$name" "${line#RESULT }"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load: wrk -t$THREADS -c$CONNECTIONS -d$DURATION (on the same machine)"
run "GET /health" "http://127.0.0.1:$GATEWAY_PORT/health"
run "GET /api/projects/{id} (JWT)" -H "Authorization: Bearer $token" "http://127.0.0.1:$GATEWAY_PORT/api/projects/$project"
