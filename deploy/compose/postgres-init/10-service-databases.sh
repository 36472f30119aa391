#!/usr/bin/env bash
# Runs once, when the PostgreSQL volume is first initialised (official image convention): one role
# and one database per service, so that no service can read another's tables.
set -euo pipefail
for svc in project ai deploy gateway; do
    var="$(echo "$svc" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password=${!var:?$var must be set}
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
        -v name="$svc" -v password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "postgres-init: database and role '$svc' created"
done
