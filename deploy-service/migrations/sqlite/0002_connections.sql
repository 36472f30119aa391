-- Users' own provider accounts and where each of their projects lives at a provider.

-- Whose account a deployment went to: 'user' (the owner's connection) or 'platform' (the
-- operator's, DEPLOY_PLATFORM_ACCOUNTS). Deployments made before connections existed used the
-- operator's account.
ALTER TABLE deployments ADD COLUMN account TEXT NOT NULL DEFAULT 'platform';

-- One connection per user and provider. The token is never stored in clear: token_sealed is
-- base64(nonce | XChaCha20-Poly1305 ciphertext | tag) under the key named by key_id, with the
-- owner and provider as associated data.
CREATE TABLE provider_connections (
    owner_id        TEXT NOT NULL,
    provider        TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    account_name    TEXT NOT NULL,
    token_sealed    TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    token_last4     TEXT NOT NULL,
    -- Vercel team; Railway project and environment.
    team_id         TEXT,
    project_id      TEXT,
    environment_id  TEXT,
    created_at_ms   BIGINT NOT NULL,
    last_used_at_ms BIGINT,
    PRIMARY KEY (owner_id, provider)
);

-- The re-encryption pass looks for rows sealed with another key than the current one.
CREATE INDEX provider_connections_key ON provider_connections (key_id);

-- A project's home at a provider (Vercel project, Netlify site, Railway service), created on its
-- first deploy there and reused after; account_id tells a home in an account the user has since
-- replaced.
CREATE TABLE provider_homes (
    owner_id      TEXT NOT NULL,
    project_id    TEXT NOT NULL,
    provider      TEXT NOT NULL,
    account_id    TEXT NOT NULL,
    target_id     TEXT NOT NULL,
    target_name   TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (owner_id, project_id, provider)
);
