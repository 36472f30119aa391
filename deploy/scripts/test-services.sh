#!/usr/bin/env bash
# Starts the PostgreSQL and Redis servers the test suite talks to, on loopback, installing them
# from Debian's packages when absent. Idempotent: a server already answering is reused.
#
# Source it to get TEST_DATABASE_URL and TEST_REDIS_URL exported:
#   source deploy/scripts/test-services.sh
# State lives under $AUTOCREA_TEST_STATE (default /tmp/autocrea-test-state).
#
# For the encrypted-connection tests it also makes a throwaway CA (and a second, unrelated one),
# turns TLS on in that PostgreSQL with a role that may only connect over TLS, and starts a
# TLS-only Redis beside the plain one; it exports TEST_DATABASE_TLS_URL, TEST_REDIS_TLS_URL,
# TEST_TLS_CA_FILE and TEST_TLS_WRONG_CA_FILE.

set -euo pipefail

AUTOCREA_TEST_STATE=${AUTOCREA_TEST_STATE:-/tmp/autocrea-test-state}
TEST_PG_PORT=${TEST_PG_PORT:-55432}
TEST_REDIS_PORT=${TEST_REDIS_PORT:-56379}
TEST_REDIS_TLS_PORT=${TEST_REDIS_TLS_PORT:-56380}
# The PostgreSQL role that may connect over TLS only (pg_hba: hostssl allowed, hostnossl refused).
TEST_PG_TLS_ROLE=autocrea_tls
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

# A CA made for these tests, a server certificate it signs for localhost and 127.0.0.1, and a
# second CA that signs nothing here (the "wrong CA"). Made once; written to a temporary
# directory first so that a concurrent run never sees half of it.
ensure_tls_material() {
    local dir="$AUTOCREA_TEST_STATE/tls" tmp
    if [ -s "$dir/server.crt" ]; then return 0; fi
    tmp=$(mktemp -d "$AUTOCREA_TEST_STATE/tls.XXXXXX")
    (
        cd "$tmp"
        for ca in ca wrong-ca; do
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
                -subj "/CN=AutoCrea test $ca" -keyout "$ca.key" -out "$ca.crt" 2>/dev/null
        done
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
            -keyout server.key -out server.csr 2>/dev/null
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile server.ext -out server.crt 2>/dev/null
        chmod 0644 ./*.crt
        chmod 0600 ./*.key
    )
    if ! mv -T "$tmp" "$dir" 2>/dev/null; then rm -rf "$tmp"; fi
}

# TLS on in the test PostgreSQL (a reload, no restart) with the server certificate, and a role
# that pg_hba lets in over TLS only. Idempotent.
ensure_postgres_tls() {
    local data="$AUTOCREA_TEST_STATE/pg" tls="$AUTOCREA_TEST_STATE/tls" user hba
    user=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then user=postgres; fi
    # The server reads its key only when the key belongs to it and no one else may read it.
    if ! cmp -s "$tls/server.crt" "$data/tls-server.crt" 2>/dev/null; then
        install -m 0600 -o "$user" "$tls/server.key" "$data/tls-server.key"
        install -m 0644 -o "$user" "$tls/server.crt" "$data/tls-server.crt"
    fi
    hba="$data/pg_hba.conf"
    if ! grep -q "$TEST_PG_TLS_ROLE" "$hba"; then
        # First match wins: these go above the trust lines initdb wrote.
        { printf '%s\n' "hostnossl all $TEST_PG_TLS_ROLE 0.0.0.0/0 reject" \
            "hostnossl all $TEST_PG_TLS_ROLE ::/0 reject" \
            "hostssl all $TEST_PG_TLS_ROLE 127.0.0.1/32 trust"; cat "$hba"; } >"$hba.new"
        chown "$user" "$hba.new"
        mv "$hba.new" "$hba"
    fi
    psql -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U autocrea -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT 'CREATE ROLE $TEST_PG_TLS_ROLE LOGIN'
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$TEST_PG_TLS_ROLE') \gexec
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = '$data/tls-server.crt';
ALTER SYSTEM SET ssl_key_file = '$data/tls-server.key';
SELECT pg_reload_conf();
SQL
}

# A Redis that speaks TLS only (plain port 0), beside the plain one.
ensure_redis_tls() {
    local tls="$AUTOCREA_TEST_STATE/tls"
    local ping=(redis-cli --tls --cacert "$tls/ca.crt" -h 127.0.0.1 -p "$TEST_REDIS_TLS_PORT" ping)
    if "${ping[@]}" >/dev/null 2>&1; then return 0; fi
    redis-server --bind 127.0.0.1 --port 0 --tls-port "$TEST_REDIS_TLS_PORT" \
        --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" \
        --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no --save '' --appendonly no \
        --daemonize yes --dir "$AUTOCREA_TEST_STATE" --logfile "$AUTOCREA_TEST_STATE/redis-tls.log" \
        --pidfile "$AUTOCREA_TEST_STATE/redis-tls.pid"
    for _ in $(seq 1 50); do
        "${ping[@]}" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "test-services: the TLS Redis did not start; see $AUTOCREA_TEST_STATE/redis-tls.log" >&2
    return 1
}

ensure_postgres
ensure_redis
ensure_tls_material
ensure_postgres_tls
ensure_redis_tls

export TEST_DATABASE_URL="postgres://autocrea@127.0.0.1:$TEST_PG_PORT/postgres"
export TEST_REDIS_URL="redis://127.0.0.1:$TEST_REDIS_PORT"
export TEST_TLS_CA_FILE="$AUTOCREA_TEST_STATE/tls/ca.crt"
export TEST_TLS_WRONG_CA_FILE="$AUTOCREA_TEST_STATE/tls/wrong-ca.crt"
export TEST_DATABASE_TLS_URL="postgres://$TEST_PG_TLS_ROLE@localhost:$TEST_PG_PORT/postgres?sslmode=verify-full&sslrootcert=$TEST_TLS_CA_FILE"
export TEST_REDIS_TLS_URL="rediss://localhost:$TEST_REDIS_TLS_PORT"
# Databases left by earlier runs (each test creates its own t_<uuid> database).
psql -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U autocrea -d postgres -Atc \
    "SELECT 'DROP DATABASE IF EXISTS ' || datname || ';' FROM pg_database WHERE datname LIKE 't\_%'" \
    | psql -q -h 127.0.0.1 -p "$TEST_PG_PORT" -U autocrea -d postgres >/dev/null 2>&1 || true
