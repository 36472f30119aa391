-- Projects and their files. Ids, paths compare byte-wise (COLLATE "C") so that cursor
-- pagination and file listings order exactly as on SQLite, whatever the server's locale.
CREATE TABLE projects (
    id            TEXT COLLATE "C" PRIMARY KEY,
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
    project_id    TEXT COLLATE "C" NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    path          TEXT COLLATE "C" NOT NULL,
    content       BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE UNIQUE INDEX files_project_path ON files (project_id, path);
