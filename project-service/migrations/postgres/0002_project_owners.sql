-- One row per user who has created a project or written a file. Creating a project or writing a
-- file starts by writing the caller's row, which takes its row lock on PostgreSQL and the write
-- lock on SQLite, so one user's creates and writes run one at a time and each per-user cap
-- (number of projects, bytes stored) is checked against what the previous one committed. The
-- counts themselves are read from `projects`, so rows from before this table count too.
CREATE TABLE project_owners (
    owner_id      TEXT PRIMARY KEY,
    locked_at_ms  BIGINT NOT NULL
);
