//! SQL pools on SQLite (the embedded default) or PostgreSQL, chosen by URL, with each service's
//! migrations embedded in its binary and run at start.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// Which SQL engine a pool talks to; SQL that differs between them branches on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (default, one process).
    Sqlite,
    /// PostgreSQL server (production, several replicas).
    Postgres,
}

/// A connection pool and the engine behind it.
#[derive(Debug, Clone)]
pub struct Database {
    /// The pool; queries use `$1`-style placeholders, which both engines accept.
    pub pool: AnyPool,
    /// The engine.
    pub backend: Backend,
}

impl Database {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) with at most `max_connections`.
    /// A SQLite file and its directory are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)");
        };
        if backend == Backend::Sqlite {
            ensure_sqlite_dir(url)?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot connect to the {backend:?} database"))?;
        Ok(Self { pool, backend })
    }

    /// Runs the migrations for this engine.
    pub async fn migrate(&self, sqlite: &Migrator, postgres: &Migrator) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlite,
            Backend::Postgres => postgres,
        };
        migrator
            .run(&self.pool)
            .await
            .context("database migration failed")
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .context("database ping")?;
        Ok(())
    }
}

/// The SQLite URL of `file` under `data_dir`, created on first use.
pub fn sqlite_url(data_dir: &Path, file: &str) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join(file).display())
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    if let Some(dir) = Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    Ok(())
}
