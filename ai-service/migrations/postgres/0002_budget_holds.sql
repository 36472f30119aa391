-- Budget held by AI calls in flight: each call reserves the most it can cost before it reaches
-- the provider, and the hold is replaced by its ai_usage row when the call ends (or deleted when
-- it fails). A hold whose call crashed stops counting at expires_at. Times are Unix ms.
CREATE TABLE ai_budget_holds (
    id BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    tokens BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX ai_budget_holds_user ON ai_budget_holds (user_id, expires_at);

-- One row per user who has reserved budget. Reserving starts by writing this row, which takes
-- its row lock on PostgreSQL and the write lock on SQLite, so one user's reservations run one at
-- a time and each sees the holds and usage the previous one committed.
CREATE TABLE ai_budget_users (
    user_id TEXT PRIMARY KEY,
    reserved_at BIGINT NOT NULL
);
