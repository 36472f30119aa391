//! SQL pools on SQLite (the embedded default) or PostgreSQL, chosen by URL, with each service's
//! migrations embedded in its binary and run at start, and a `db.query` span per statement for
//! the stores that run their SQL through [`Database::traced`] / [`Traced`].

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

mod traced;
pub use traced::{Traced, TracedTransaction};

/// Which SQL engine a pool talks to; SQL that differs between them branches on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file (default, one process).
    Sqlite,
    /// PostgreSQL server (production, several replicas).
    Postgres,
}

/// A service's schema history for each engine, embedded from `migrations/sqlite` and
/// `migrations/postgres` beside its `Cargo.toml` by [`migrations!`](crate::migrations) (whose
/// build script, `build-migrations.rs`, makes cargo notice a new migration file).
#[derive(Debug)]
pub struct Migrations {
    /// For SQLite.
    pub sqlite: Migrator,
    /// For PostgreSQL.
    pub postgres: Migrator,
}

/// The calling crate's [`Migrations`]: `static MIGRATIONS: Migrations = migrations!();`.
#[macro_export]
macro_rules! migrations {
    () => {
        $crate::db::Migrations {
            sqlite: ::sqlx::migrate!("./migrations/sqlite"),
            postgres: ::sqlx::migrate!("./migrations/postgres"),
        }
    };
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

    /// What every service does with its database at start: connects to `url` with at most
    /// `max_connections`, brings the schema up to date with the migrations for its engine, and
    /// reports the pool in the metrics as `service`'s.
    pub async fn open(
        service: &'static str,
        url: &secrecy::SecretString,
        max_connections: u32,
        migrations: &Migrations,
    ) -> anyhow::Result<Self> {
        let db = Self::connect(secrecy::ExposeSecret::expose_secret(url), max_connections).await?;
        db.migrate(migrations).await?;
        crate::metrics::observe_pool(service, db.pool.clone());
        tracing::info!(backend = ?db.backend, service, "database ready");
        Ok(db)
    }

    /// Runs the migrations for this engine.
    pub async fn migrate(&self, migrations: &Migrations) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &migrations.sqlite,
            Backend::Postgres => &migrations.postgres,
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

/// Whether `error` says the database could not be reached (connection refused, reset or timed
/// out; PostgreSQL shutting down, crashed or starting up) rather than that a statement failed.
/// Services answer the first with UNAVAILABLE (try again) and the second as an internal error.
pub fn unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown,
        // cannot connect now.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// What a caller is told when the database cannot be reached.
const DATABASE_UNAVAILABLE: &str = "the database is unavailable right now; try again shortly";

/// A failed database operation, classified, with what was being done as context. A service's
/// error holds it as one variant and answers it with its status: [`DbFailure::Unavailable`] is
/// UNAVAILABLE ("try again"), [`DbFailure::Internal`] an internal error whose cause is logged and
/// never shown.
#[derive(Debug, thiserror::Error)]
pub enum DbFailure {
    /// The database could not be reached (see [`unreachable`]).
    #[error("{}", DATABASE_UNAVAILABLE)]
    Unavailable(#[source] anyhow::Error),
    /// A statement failed or a row could not be read.
    #[error(transparent)]
    Internal(anyhow::Error),
}

impl From<DbFailure> for tonic::Status {
    fn from(failure: DbFailure) -> Self {
        match failure {
            DbFailure::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "database unavailable");
                tonic::Status::unavailable(DATABASE_UNAVAILABLE)
            }
            DbFailure::Internal(cause) => crate::grpc::internal(cause),
        }
    }
}

/// Adds what was being done to a database error and classifies it as a [`DbFailure`], which `?`
/// turns into the caller's own error.
pub trait DbContext<T> {
    /// `context` names the operation, e.g. "insert project".
    fn db(self, context: &'static str) -> Result<T, DbFailure>;
}

impl<T> DbContext<T> for Result<T, sqlx::Error> {
    fn db(self, context: &'static str) -> Result<T, DbFailure> {
        self.map_err(|e| {
            let unavailable = unreachable(&e);
            let cause = anyhow::Error::new(e).context(context);
            if unavailable {
                DbFailure::Unavailable(cause)
            } else {
                DbFailure::Internal(cause)
            }
        })
    }
}

/// A service's database URL: `DATABASE_URL`, or the SQLite file `file` under `DATA_DIR`
/// (default `./data`) when it is unset. A URL may hold a password, so it is a secret.
pub fn url_from_env(file: &str) -> secrecy::SecretString {
    let url = crate::config::optional("DATABASE_URL").unwrap_or_else(|| {
        let dir = crate::config::optional("DATA_DIR").unwrap_or_else(|| "./data".into());
        sqlite_url(Path::new(&dir), file)
    });
    secrecy::SecretString::from(url)
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

impl Backend {
    /// The OpenTelemetry `db.system` name of the engine.
    pub fn system(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgresql",
        }
    }
}
