-- One row per AI call: who, what, which model, tokens billed, whether the prompt cache answered,
-- how long it took. Times are Unix milliseconds (UTC) so that SQLite and PostgreSQL compare alike.
CREATE TABLE ai_usage (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    operation TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT NOT NULL DEFAULT 0,
    cached INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    latency_ms BIGINT NOT NULL,
    provider_ms BIGINT,
    project_id TEXT,
    created_at BIGINT NOT NULL
);

CREATE INDEX ai_usage_user_time ON ai_usage (user_id, created_at);
