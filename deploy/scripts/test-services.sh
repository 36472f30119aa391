#!/usr/bin/env bash
# Starts the PostgreSQL and Redis servers the test suite talks to, on loopback, installing them
# from Debian's packages when absent. Idempotent: a server already answering is reused.
#
# Source it to get TEST_DATABASE_URL and TEST_REDIS_URL exported:
#   source deploy/scripts/test-services.sh
# State lives under $AUTOCREA_TEST_STATE (default /tmp/autocrea-test-state).

set -euo pipefail

AUTOCREA_TEST_STATE=${AUTOCREA_TEST_STATE:-/tmp/autocrea-test-state}
TEST_PG_PORT=${TEST_PG_PORT:-55432}
TEST_REDIS_PORT=${TEST_REDIS_PORT:-56379}
mkdir -p "$AUTOCREA_TEST_STATE"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    if [ ! -f "$AUTOCREA_TEST_STATE/.apt-updated" ]; then
        as_root apt-get update -qq
        touch "$AUTOCREA_TEST_STATE/.apt-updated"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    done
    return 1
}

ensure_postgres() {
    if pg_isready -q -h 127.0.0.1 -p "$TEST_PG_PORT" 2>/dev/null; then
        return 0
    fi
    if ! pg_bin >/dev/null; then
        echo "test-services: installing PostgreSQL from Debian's packages" >&2
        apt_install postgresql postgresql-client
    fi
    local bin data run user
    bin=$(pg_bin)
    data="$AUTOCREA_TEST_STATE/pg"
    run="$AUTOCREA_TEST_STATE/pg-run"
    # PostgreSQL refuses to run as root: use the postgres account when we are root.
    user=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then user=postgres; fi
    mkdir -p "$run"
    if [ ! -s "$data/PG_VERSION" ]; then
        rm -rf "$data"
        mkdir -p "$data"
        chown -R "$user" "$data" "$run"
        as_user "$user" "$bin/initdb" -D "$data" -U autocrea --auth=trust -E UTF8 >/dev/null
    fi
    chown -R "$user" "$data" "$run"
    as_user "$user" "$bin/pg_ctl" -D "$data" -l "$run/pg.log" -w -t 60 start \
        -o "-p $TEST_PG_PORT -k $run -c listen_addresses=127.0.0.1 -c max_connections=500 -c fsync=on -c shared_buffers=128MB" >/dev/null
}

as_user() {
    local user=$1; shift
    if [ "$(id -un)" = "$user" ]; then "$@"; else runuser -u "$user" -- "$@"; fi
}

ensure_redis() {
    if redis-cli -h 127.0.0.1 -p "$TEST_REDIS_PORT" ping >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v redis-server >/dev/null; then
        echo "test-services: installing Redis from Debian's packages" >&2
        apt_install redis-server
    fi
    redis-server --bind 127.0.0.1 --port "$TEST_REDIS_PORT" --save '' --appendonly no \
        --daemonize yes --dir "$AUTOCREA_TEST_STATE" --logfile "$AUTOCREA_TEST_STATE/redis.log"
    for _ in $(seq 1 50); do
        redis-cli -h 127.0.0.1 -p "$TEST_REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "test-services: Redis did not start; see $AUTOCREA_TEST_STATE/redis.log" >&2
    return 1
}

ensure_postgres
ensure_redis

export TEST_DATABASE_URL="postgres://autocrea@127.0.0.1:$TEST_PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$TEST_REDIS_PORT"
# Databases left by earlier runs (each test creates its own t_<uuid> database).
psql -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U autocrea -d postgres -Atc \
    "SELECT 'DROP DATABASE IF EXISTS ' || datname || ';' FROM pg_database WHERE datname LIKE 't\_%'" \
    | psql -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U autocrea -d postgres >/dev/null 2>&1 || true
