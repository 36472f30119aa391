-- Personal API keys. Only a SHA-256 of each key and a short display prefix are kept; the key
-- itself is shown once, when it is created.
CREATE TABLE api_keys (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    name            TEXT NOT NULL,
    prefix          TEXT NOT NULL,
    secret_hash     TEXT NOT NULL,
    scopes          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    expires_at_ms   BIGINT,
    revoked_at_ms   BIGINT
);

-- Authentication looks keys up by prefix, then compares hashes in constant time.
CREATE INDEX api_keys_prefix ON api_keys (prefix);
CREATE INDEX api_keys_user ON api_keys (user_id, created_at_ms);
