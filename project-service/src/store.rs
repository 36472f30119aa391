//! `ProjectStore`: all SQL of project-service, on SQLite or PostgreSQL through one `AnyPool`.
//!
//! Every statement is scoped to the owner, so a project of another user behaves exactly like a
//! project that does not exist.

use std::time::{SystemTime, UNIX_EPOCH};

use service_runtime::db::{Database, TracedTransaction};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{DbContext, Error, Result};

/// Page tokens of `ListProjects`, bound to the caller.
pub const PROJECT_PAGES: PageTokens = PageTokens::new("autocrea.project.v1.projects");
use crate::validated::{Description, ExpectedVersion, PageSize, ProjectId, ProjectName, TechLabel};
use service_runtime::page_token::{Cursor, PageTokens};

mod files;

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

/// How much one user may hold, all projects together.
#[derive(Debug, Clone, Copy)]
pub struct UserQuota {
    /// Most projects.
    pub max_projects: u64,
    /// Largest sum of file sizes in bytes over all the user's projects.
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

    /// Inserts a new project of `owner` at version 1, unless `owner` already has
    /// `quota.max_projects`.
    pub async fn create_project(
        &self,
        owner: &str,
        new: NewProject,
        quota: UserQuota,
    ) -> Result<ProjectRecord> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        Self::lock_owner(&mut tx, owner, now).await?;
        let (projects, _) = Self::owner_usage(&mut tx, owner).await?;
        if projects as u64 >= quota.max_projects {
            return Err(Error::TooManyProjects {
                limit: quota.max_projects,
            });
        }
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
        .execute(tx.traced())
        .await
        .db("insert project")?;
        tx.commit().await.db("commit insert project")?;
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

    async fn begin(&self) -> Result<TracedTransaction> {
        Ok(self.db.begin().await.db("begin transaction")?)
    }

    /// Serialises `owner`'s project creations and file writes, so that the per-user caps are
    /// checked against everything committed before: the upsert takes the owner row's lock on
    /// PostgreSQL and the database write lock on SQLite. Always taken before a project's lock
    /// (see [`Self::lock_project`]), so the two never deadlock.
    async fn lock_owner(tx: &mut TracedTransaction, owner: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO project_owners (owner_id, locked_at_ms) VALUES ($1, $2) \
             ON CONFLICT (owner_id) DO UPDATE SET locked_at_ms = excluded.locked_at_ms",
        )
        .bind(owner)
        .bind(now)
        .execute(tx.traced())
        .await
        .db("lock owner")?;
        Ok(())
    }

    /// How many projects `owner` has and how many bytes they hold together.
    async fn owner_usage(tx: &mut TracedTransaction, owner: &str) -> Result<(i64, i64)> {
        // SUM of BIGINT is NUMERIC on PostgreSQL, which the Any driver cannot decode: cast back.
        Ok(sqlx::query_as(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(COALESCE(SUM(total_size), 0) AS BIGINT) \
             FROM projects WHERE owner_id = $1",
        )
        .bind(owner)
        .fetch_one(tx.traced())
        .await
        .db("read owner usage")?)
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
