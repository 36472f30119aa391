#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (official image convention): one role
# and one database per service, so that no service can read another's tables. A role may connect
# to its own database only: CONNECT is revoked from PUBLIC on every database, the administrative
# ones included, and granted back to the owner alone.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres <<'SQL'
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
for svc in project ai deploy gateway; do
    var="$(echo "$svc" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password=${!var:?$var must be set}
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
        -v name="$svc" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "postgres-init: database and role '$svc' created"
done
