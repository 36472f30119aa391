-- Deployments (a persisted state machine) and their event log. Ids compare byte-wise
-- (COLLATE "C") so that cursor pagination orders exactly as on SQLite.
CREATE TABLE deployments (
    id                     TEXT COLLATE "C" PRIMARY KEY,
    owner_id               TEXT NOT NULL,
    project_id             TEXT NOT NULL,
    provider               TEXT NOT NULL,
    target                 TEXT NOT NULL,
    -- queued, uploading, building, ready, error, canceled
    state                  TEXT NOT NULL,
    -- For a rollback: the deployment made live again.
    rollback_of            TEXT,
    -- Variables to set at the provider; emptied once sent.
    env_json               TEXT NOT NULL DEFAULT '{}',
    idempotency_key        TEXT,
    -- Digest of the request fields, to tell a retry from a reuse of the key.
    request_digest         TEXT NOT NULL DEFAULT '',
    provider_deployment_id TEXT,
    provider_site_id       TEXT,
    provider_state         TEXT,
    url                    TEXT,
    error                  TEXT,
    created_at_ms          BIGINT NOT NULL,
    updated_at_ms          BIGINT NOT NULL,
    finished_at_ms         BIGINT,
    -- Poller bookkeeping: when to look next, how often it has, consecutive failures, lease.
    next_poll_at_ms        BIGINT NOT NULL,
    polls                  BIGINT NOT NULL DEFAULT 0,
    failures               BIGINT NOT NULL DEFAULT 0,
    lease_owner            TEXT,
    lease_until_ms         BIGINT NOT NULL DEFAULT 0
);

CREATE UNIQUE INDEX deployments_idempotency ON deployments (owner_id, idempotency_key);
CREATE INDEX deployments_owner_created ON deployments (owner_id, created_at_ms DESC, id DESC);
CREATE INDEX deployments_project_created
    ON deployments (owner_id, project_id, created_at_ms DESC, id DESC);
CREATE INDEX deployments_due ON deployments (next_poll_at_ms)
    WHERE state IN ('queued', 'uploading', 'building');

CREATE TABLE deployment_events (
    sequence      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    deployment_id TEXT COLLATE "C" NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    state         TEXT NOT NULL,
    message       TEXT NOT NULL,
    url           TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX deployment_events_deployment ON deployment_events (deployment_id, sequence);
