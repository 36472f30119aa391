//! The SQL of a project's files: writes keep the project (and the owner's projects together)
//! within their quotas.

use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{FileRecord, ProjectQuota, ProjectStore, UserQuota, now_ms};
use crate::error::{DbContext, Error, Result};
use crate::validated::{FileContent, FilePath, ProjectId};

impl ProjectStore {
    /// Creates or replaces the file at `path`, keeping the project within `quota` and all of
    /// `owner`'s projects within `user_quota`. Returns the file (without content) and whether
    /// it is new.
    pub async fn put_file(
        &self,
        owner: &str,
        id: &ProjectId,
        path: &FilePath,
        content: FileContent,
        quota: ProjectQuota,
        user_quota: UserQuota,
    ) -> Result<(FileRecord, bool)> {
        let now = now_ms();
        let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
        // Moved into the statement below: files may be megabytes, so no copy.
        let bytes = content.into_bytes();
        let size = bytes.len() as i64;

        let mut tx = self.begin().await?;
        Self::lock_owner(&mut tx, owner, now).await?;
        Self::lock_project(&mut tx, owner, id, now).await?;
        let (_, user_total) = Self::owner_usage(&mut tx, owner).await?;
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
        let new_user_total = user_total - old_size + size;
        if new_user_total as u64 > user_quota.max_bytes && new_user_total > user_total {
            return Err(Error::UserStorageFull {
                limit: user_quota.max_bytes,
                would_be: new_user_total,
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
