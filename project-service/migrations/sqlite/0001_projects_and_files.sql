-- Projects and their files. Text compares byte-wise (BINARY), as on PostgreSQL with COLLATE "C".
CREATE TABLE projects (
    id            TEXT PRIMARY KEY NOT NULL,
    owner_id      TEXT NOT NULL,
    name          TEXT NOT NULL,
    description   TEXT NOT NULL,
    language      TEXT NOT NULL,
    framework     TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    version       BIGINT NOT NULL,
    file_count    BIGINT NOT NULL DEFAULT 0,
    total_size    BIGINT NOT NULL DEFAULT 0
);

-- ListProjects: newest first for one owner, ties broken by id.
CREATE INDEX projects_owner_created ON projects (owner_id, created_at_ms DESC, id DESC);

CREATE TABLE files (
    project_id    TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path          TEXT NOT NULL,
    content       BLOB NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE UNIQUE INDEX files_project_path ON files (project_id, path);
