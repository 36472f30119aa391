//! `ProjectStore`: all SQL of project-service, on SQLite or PostgreSQL through one `AnyPool`.
//!
//! Every statement is scoped to the owner, so a project of another user behaves exactly like a
//! project that does not exist.

use std::time::{SystemTime, UNIX_EPOCH};

use service_runtime::db::{Database, TracedTransaction};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{DbContext, Error, Result};

/// Page tokens of `ListProjects`, bound to the caller.
pub const PROJECT_PAGES: PageTokens = PageTokens::new("autocrea.project.v1.projects");
use crate::validated::{
    Description, ExpectedVersion, FileContent, FilePath, PageSize, ProjectId, ProjectName,
    TechLabel,
};
use service_runtime::page_token::{Cursor, PageTokens};

const PROJECT_COLUMNS: &str = "id, owner_id, name, description, language, framework, \
     created_at_ms, updated_at_ms, version, file_count, total_size";

/// A project as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    /// UUID v7.
    pub id: String,
    /// The user who owns it.
    pub owner_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Programming language label.
    pub language: String,
    /// Framework label.
    pub framework: String,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms; also moves when files change.
    pub updated_at_ms: i64,
    /// Starts at 1; every update of the project's own fields adds 1.
    pub version: i64,
    /// Number of files.
    pub file_count: i64,
    /// Sum of file sizes in bytes.
    pub total_size: i64,
}

/// A file as stored; `content` is `None` when the query did not load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Path inside the project.
    pub path: String,
    /// The bytes, when loaded.
    pub content: Option<Vec<u8>>,
    /// Size in bytes.
    pub size: i64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub updated_at_ms: i64,
}

/// The fields of a new project.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Display name.
    pub name: ProjectName,
    /// Free text.
    pub description: Description,
    /// Programming language label.
    pub language: TechLabel,
    /// Framework label.
    pub framework: TechLabel,
}

/// The fields an update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProjectChanges {
    /// New name.
    pub name: Option<ProjectName>,
    /// New description.
    pub description: Option<Description>,
    /// New language label.
    pub language: Option<TechLabel>,
    /// New framework label.
    pub framework: Option<TechLabel>,
}

/// How much one project may hold.
#[derive(Debug, Clone, Copy)]
pub struct ProjectQuota {
    /// Most files.
    pub max_files: u64,
    /// Largest sum of file sizes in bytes.
    pub max_bytes: u64,
}

/// One page of projects and the cursor of the next one, if any.
#[derive(Debug, Clone)]
pub struct ProjectPage {
    /// Newest first.
    pub projects: Vec<ProjectRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Projects and files in SQL.
#[derive(Debug, Clone)]
pub struct ProjectStore {
    db: Database,
}

impl ProjectStore {
    /// A store over `db`, whose migrations have run.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Inserts a new project of `owner` at version 1.
    pub async fn create_project(&self, owner: &str, new: NewProject) -> Result<ProjectRecord> {
        let now = now_ms();
        let record = ProjectRecord {
            id: ProjectId::generate().as_str().to_string(),
            owner_id: owner.to_string(),
            name: new.name.as_str().to_string(),
            description: new.description.as_str().to_string(),
            language: new.language.as_str().to_string(),
            framework: new.framework.as_str().to_string(),
            created_at_ms: now,
            updated_at_ms: now,
            version: 1,
            file_count: 0,
            total_size: 0,
        };
        sqlx::query(
            "INSERT INTO projects (id, owner_id, name, description, language, framework, \
             created_at_ms, updated_at_ms, version, file_count, total_size) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, 0, 0)",
        )
        .bind(&record.id)
        .bind(&record.owner_id)
        .bind(&record.name)
        .bind(&record.description)
        .bind(&record.language)
        .bind(&record.framework)
        .bind(record.created_at_ms)
        .bind(record.updated_at_ms)
        .execute(self.db.traced())
        .await
        .db("insert project")?;
        Ok(record)
    }

    /// The project `id` of `owner`.
    pub async fn get_project(&self, owner: &str, id: &ProjectId) -> Result<ProjectRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1 AND owner_id = $2"
        )))
        .bind(id.as_str())
        .bind(owner)
        .fetch_optional(self.db.traced())
        .await
        .db("select project")?
        .ok_or(Error::ProjectNotFound)?;
        Ok(project_from_row(&row).db("decode project")?)
    }

    /// Up to `size` projects of `owner`, newest first, starting after `after`.
    pub async fn list_projects(
        &self,
        owner: &str,
        size: PageSize,
        after: Option<&Cursor>,
    ) -> Result<ProjectPage> {
        // One extra row tells whether another page follows.
        let limit = size.get() + 1;
        let rows = match after {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE owner_id = $1 \
                     ORDER BY created_at_ms DESC, id DESC LIMIT $2"
                )))
                .bind(owner)
                .bind(limit)
                .fetch_all(self.db.traced())
                .await
            }
            Some(cursor) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {PROJECT_COLUMNS} FROM projects WHERE owner_id = $1 \
                     AND (created_at_ms < $2 OR (created_at_ms = $2 AND id < $3)) \
                     ORDER BY created_at_ms DESC, id DESC LIMIT $4"
                )))
                .bind(owner)
                .bind(cursor.created_at_ms)
                .bind(&cursor.id)
                .bind(limit)
                .fetch_all(self.db.traced())
                .await
            }
        }
        .db("list projects")?;
        let mut projects = rows
            .iter()
            .map(project_from_row)
            .collect::<Result<Vec<_>, _>>()
            .db("decode project")?;
        let next = if projects.len() as i64 > size.get() {
            projects.truncate(size.get() as usize);
            projects.last().map(|p| Cursor {
                created_at_ms: p.created_at_ms,
                id: p.id.clone(),
            })
        } else {
            None
        };
        Ok(ProjectPage { projects, next })
    }

    /// Applies `changes` when the project is still at `expected`, and moves it to the next
    /// version.
    pub async fn update_project(
        &self,
        owner: &str,
        id: &ProjectId,
        expected: ExpectedVersion,
        changes: ProjectChanges,
    ) -> Result<ProjectRecord> {
        let text = |v: Option<&str>| v.map(str::to_string);
        // The version check and the write are one statement, so two racing updates based on
        // the same version cannot both succeed.
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE projects SET \
             name = COALESCE($1, name), description = COALESCE($2, description), \
             language = COALESCE($3, language), framework = COALESCE($4, framework), \
             version = version + 1, updated_at_ms = $5 \
             WHERE id = $6 AND owner_id = $7 AND version = $8 \
             RETURNING {PROJECT_COLUMNS}"
        )))
        .bind(text(changes.name.as_ref().map(ProjectName::as_str)))
        .bind(text(changes.description.as_ref().map(Description::as_str)))
        .bind(text(changes.language.as_ref().map(TechLabel::as_str)))
        .bind(text(changes.framework.as_ref().map(TechLabel::as_str)))
        .bind(now_ms())
        .bind(id.as_str())
        .bind(owner)
        .bind(expected.get())
        .fetch_optional(self.db.traced())
        .await
        .db("update project")?;
        match row {
            Some(row) => Ok(project_from_row(&row).db("decode project")?),
            None => {
                // Either the project is gone (or not the caller's) or its version moved on.
                let current = self.get_project(owner, id).await?;
                Err(Error::VersionConflict {
                    expected: expected.get(),
                    current: current.version,
                })
            }
        }
    }

    /// Deletes the project `id` of `owner` and all of its files.
    pub async fn delete_project(&self, owner: &str, id: &ProjectId) -> Result<()> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM projects WHERE id = $1 AND owner_id = $2")
            .bind(id.as_str())
            .bind(owner)
            .execute(tx.traced())
            .await
            .db("delete project")?;
        if deleted.rows_affected() == 0 {
            return Err(Error::ProjectNotFound);
        }
        // The foreign key cascades too; deleting explicitly keeps this correct even where
        // foreign keys are not enforced.
        sqlx::query("DELETE FROM files WHERE project_id = $1")
            .bind(id.as_str())
            .execute(tx.traced())
            .await
            .db("delete project files")?;
        tx.commit().await.db("commit delete project")?;
        Ok(())
    }

    /// Creates or replaces the file at `path`, keeping the project within `quota`. Returns the
    /// file (without content) and whether it is new.
    pub async fn put_file(
        &self,
        owner: &str,
        id: &ProjectId,
        path: &FilePath,
        content: FileContent,
        quota: ProjectQuota,
    ) -> Result<(FileRecord, bool)> {
        let now = now_ms();
        let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
        // Moved into the statement below: files may be megabytes, so no copy.
        let bytes = content.into_bytes();
        let size = bytes.len() as i64;

        let mut tx = self.begin().await?;
        Self::lock_project(&mut tx, owner, id, now).await?;
        let (file_count, total_size): (i64, i64) =
            sqlx::query_as("SELECT file_count, total_size FROM projects WHERE id = $1")
                .bind(id.as_str())
                .fetch_one(tx.traced())
                .await
                .db("read project usage")?;
        let existing: Option<(i64, i64)> = sqlx::query_as(
            "SELECT size, created_at_ms FROM files WHERE project_id = $1 AND path = $2",
        )
        .bind(id.as_str())
        .bind(path.as_str())
        .fetch_optional(tx.traced())
        .await
        .db("read existing file")?;

        let old_size = existing.map_or(0, |(old, _)| old);
        let new_total = total_size - old_size + size;
        if existing.is_none() && file_count as u64 >= quota.max_files {
            return Err(Error::TooManyFiles {
                limit: quota.max_files,
            });
        }
        // A write that does not grow the project is allowed even above the limit (say, after
        // the limit was lowered), so users can always shrink their way back under it.
        if new_total as u64 > quota.max_bytes && new_total > total_size {
            return Err(Error::ProjectTooLarge {
                limit: quota.max_bytes,
                would_be: new_total,
            });
        }

        let created_at_ms = match existing {
            Some((_, created_at_ms)) => {
                sqlx::query(
                    "UPDATE files SET content = $1, size = $2, sha256 = $3, updated_at_ms = $4 \
                     WHERE project_id = $5 AND path = $6",
                )
                .bind(bytes)
                .bind(size)
                .bind(&sha256)
                .bind(now)
                .bind(id.as_str())
                .bind(path.as_str())
                .execute(tx.traced())
                .await
                .db("replace file")?;
                created_at_ms
            }
            None => {
                sqlx::query(
                    "INSERT INTO files (project_id, path, content, size, sha256, created_at_ms, \
                     updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                )
                .bind(id.as_str())
                .bind(path.as_str())
                .bind(bytes)
                .bind(size)
                .bind(&sha256)
                .bind(now)
                .execute(tx.traced())
                .await
                .db("insert file")?;
                now
            }
        };
        sqlx::query(
            "UPDATE projects SET file_count = file_count + $1, total_size = total_size + $2 \
             WHERE id = $3",
        )
        .bind(i64::from(existing.is_none()))
        .bind(size - old_size)
        .bind(id.as_str())
        .execute(tx.traced())
        .await
        .db("update project usage")?;
        tx.commit().await.db("commit put file")?;

        let file = FileRecord {
            path: path.as_str().to_string(),
            content: None,
            size,
            sha256,
            created_at_ms,
            updated_at_ms: now,
        };
        Ok((file, existing.is_none()))
    }

    /// The file at `path` in project `id` of `owner`, with its content.
    pub async fn get_file(
        &self,
        owner: &str,
        id: &ProjectId,
        path: &FilePath,
    ) -> Result<FileRecord> {
        self.ensure_project(owner, id).await?;
        let row = sqlx::query(
            "SELECT path, content, size, sha256, created_at_ms, updated_at_ms FROM files \
             WHERE project_id = $1 AND path = $2",
        )
        .bind(id.as_str())
        .bind(path.as_str())
        .fetch_optional(self.db.traced())
        .await
        .db("select file")?
        .ok_or(Error::FileNotFound)?;
        Ok(file_from_row(&row, true).db("decode file")?)
    }

    /// The files of project `id` of `owner`, ordered by path (byte-wise).
    pub async fn list_files(
        &self,
        owner: &str,
        id: &ProjectId,
        include_content: bool,
    ) -> Result<Vec<FileRecord>> {
        self.ensure_project(owner, id).await?;
        let sql = if include_content {
            "SELECT path, content, size, sha256, created_at_ms, updated_at_ms FROM files \
             WHERE project_id = $1 ORDER BY path"
        } else {
            "SELECT path, size, sha256, created_at_ms, updated_at_ms FROM files \
             WHERE project_id = $1 ORDER BY path"
        };
        let rows = sqlx::query(sql)
            .bind(id.as_str())
            .fetch_all(self.db.traced())
            .await
            .db("list files")?;
        Ok(rows
            .iter()
            .map(|row| file_from_row(row, include_content))
            .collect::<Result<Vec<_>, _>>()
            .db("decode file")?)
    }

    /// Deletes the file at `path` in project `id` of `owner`.
    pub async fn delete_file(&self, owner: &str, id: &ProjectId, path: &FilePath) -> Result<()> {
        let mut tx = self.begin().await?;
        Self::lock_project(&mut tx, owner, id, now_ms()).await?;
        let size: i64 = sqlx::query_scalar(
            "DELETE FROM files WHERE project_id = $1 AND path = $2 RETURNING size",
        )
        .bind(id.as_str())
        .bind(path.as_str())
        .fetch_optional(tx.traced())
        .await
        .db("delete file")?
        .ok_or(Error::FileNotFound)?;
        sqlx::query(
            "UPDATE projects SET file_count = file_count - 1, total_size = total_size - $1 \
             WHERE id = $2",
        )
        .bind(size)
        .bind(id.as_str())
        .execute(tx.traced())
        .await
        .db("update project usage")?;
        tx.commit().await.db("commit delete file")?;
        Ok(())
    }

    /// Renames the file at `from` in project `id` of `owner` to `to`, keeping its content and
    /// creation time; the project's size and file count do not change.
    pub async fn move_file(
        &self,
        owner: &str,
        id: &ProjectId,
        from: &FilePath,
        to: &FilePath,
    ) -> Result<FileRecord> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        Self::lock_project(&mut tx, owner, id, now).await?;
        if from != to {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT size FROM files WHERE project_id = $1 AND path = $2")
                    .bind(id.as_str())
                    .bind(to.as_str())
                    .fetch_optional(tx.traced())
                    .await
                    .db("read target path")?;
            if taken.is_some() {
                return Err(Error::FileExists {
                    path: to.as_str().to_string(),
                });
            }
        }
        let row = sqlx::query(
            "UPDATE files SET path = $1, updated_at_ms = $2 WHERE project_id = $3 AND path = $4 \
             RETURNING path, size, sha256, created_at_ms, updated_at_ms",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(id.as_str())
        .bind(from.as_str())
        .fetch_optional(tx.traced())
        .await
        .db("move file")?
        .ok_or(Error::FileNotFound)?;
        let file = file_from_row(&row, false).db("decode file")?;
        tx.commit().await.db("commit move file")?;
        Ok(file)
    }

    async fn begin(&self) -> Result<TracedTransaction> {
        Ok(self.db.begin().await.db("begin transaction")?)
    }

    /// Checks ownership and serialises writers of the project's files: the UPDATE takes the
    /// row lock on PostgreSQL and the database write lock on SQLite before anything is read,
    /// so quota checks see every committed write and SQLite never fails with a stale snapshot.
    async fn lock_project(
        tx: &mut TracedTransaction,
        owner: &str,
        id: &ProjectId,
        now: i64,
    ) -> Result<()> {
        let touched =
            sqlx::query("UPDATE projects SET updated_at_ms = $1 WHERE id = $2 AND owner_id = $3")
                .bind(now)
                .bind(id.as_str())
                .bind(owner)
                .execute(tx.traced())
                .await
                .db("lock project")?;
        if touched.rows_affected() == 0 {
            return Err(Error::ProjectNotFound);
        }
        Ok(())
    }

    async fn ensure_project(&self, owner: &str, id: &ProjectId) -> Result<()> {
        sqlx::query("SELECT id FROM projects WHERE id = $1 AND owner_id = $2")
            .bind(id.as_str())
            .bind(owner)
            .fetch_optional(self.db.traced())
            .await
            .db("check project")?
            .map(|_| ())
            .ok_or(Error::ProjectNotFound)
    }
}

fn project_from_row(row: &AnyRow) -> Result<ProjectRecord, sqlx::Error> {
    Ok(ProjectRecord {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        language: row.try_get("language")?,
        framework: row.try_get("framework")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        version: row.try_get("version")?,
        file_count: row.try_get("file_count")?,
        total_size: row.try_get("total_size")?,
    })
}

fn file_from_row(row: &AnyRow, with_content: bool) -> Result<FileRecord, sqlx::Error> {
    Ok(FileRecord {
        path: row.try_get("path")?,
        content: if with_content {
            Some(row.try_get("content")?)
        } else {
            None
        },
        size: row.try_get("size")?,
        sha256: row.try_get("sha256")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
