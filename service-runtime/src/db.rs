//! SQL pools on SQLite (the embedded default) or PostgreSQL, chosen by URL, with each service's
//! migrations embedded in its binary and run at start, and a `db.query` span per statement for
//! the stores that run their SQL through [`Database::traced`] / [`Traced`].

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::{
    AnyPoolOptions, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo, install_default_drivers,
};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor, Transaction};
use tokio_stream::Stream;
use tracing::Instrument;

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

impl Database {
    /// The pool as an executor that opens a `db.query` span per statement ([`Traced`]). Stores
    /// run their queries on it: `sqlx::query(…).fetch_one(self.db.traced())`.
    pub fn traced(&self) -> Traced<&AnyPool> {
        Traced::new(&self.pool, self.backend)
    }

    /// Begins a transaction (in a `db.query` span named `BEGIN`) whose statements are traced
    /// like the pool's.
    pub async fn begin(&self) -> Result<TracedTransaction, sqlx::Error> {
        let span = query_span(self.backend, "BEGIN");
        let tx = record_outcome(&span, self.pool.begin().instrument(span.clone()).await)?;
        Ok(TracedTransaction {
            tx,
            backend: self.backend,
        })
    }
}

/// A transaction from [`Database::begin`]. Dropping it without [`commit`](Self::commit) rolls
/// it back.
#[derive(Debug)]
pub struct TracedTransaction {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl TracedTransaction {
    /// The transaction's connection as an executor with a `db.query` span per statement.
    pub fn traced(&mut self) -> Traced<&mut AnyConnection> {
        Traced::new(&mut *self.tx, self.backend)
    }

    /// Commits, in a `db.query` span named `COMMIT`.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let span = query_span(self.backend, "COMMIT");
        record_outcome(&span, self.tx.commit().instrument(span.clone()).await)
    }

    /// Rolls back, in a `db.query` span named `ROLLBACK`.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        let span = query_span(self.backend, "ROLLBACK");
        record_outcome(&span, self.tx.rollback().instrument(span.clone()).await)
    }
}

/// An executor (the pool, or a connection of a transaction) whose statements each run in a
/// `db.query` span: named `<operation> <table>` (`SELECT projects`), with the OpenTelemetry
/// attributes `db.system`, `db.operation`, `db.sql.table` and `db.statement` (the SQL text with
/// its `$n` placeholders: bound values are never recorded), and status `ERROR` when it fails.
/// Statements run outside any span are not traced.
///
/// [`Database::traced`] and [`TracedTransaction::traced`] hand them out.
#[derive(Debug)]
pub struct Traced<E> {
    inner: E,
    backend: Backend,
}

impl<E> Traced<E> {
    /// `inner`, traced as talking to `backend`.
    pub fn new(inner: E, backend: Backend) -> Self {
        Self { inner, backend }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
type BoxStream<'a, T> = Pin<Box<dyn Stream<Item = T> + Send + 'a>>;

impl<'c, E> Executor<'c> for Traced<E>
where
    E: Executor<'c, Database = Any>,
{
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let span = query_span(self.backend, query.sql());
        let inner = {
            let _entered = span.enter();
            self.inner.fetch_many(query)
        };
        Box::pin(InSpan { inner, span })
    }

    fn fetch_optional<'e, 'q: 'e, Q>(
        self,
        query: Q,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        Q: 'q + Execute<'q, Any>,
    {
        let span = query_span(self.backend, query.sql());
        let future = {
            let _entered = span.enter();
            self.inner.fetch_optional(query)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            record_outcome(&span, result)
        })
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}

/// A stream of query results polled inside its span; failed items mark the span as an error.
struct InSpan<'e, T> {
    inner: BoxStream<'e, Result<T, sqlx::Error>>,
    span: tracing::Span,
}

impl<T> Stream for InSpan<'_, T> {
    type Item = Result<T, sqlx::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let polled = this.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Err(error))) = &polled {
            mark_failed(&this.span, error);
        }
        polled
    }
}

fn record_outcome<T>(
    span: &tracing::Span,
    result: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if let Err(error) = &result {
        mark_failed(span, error);
    }
    result
}

fn mark_failed(span: &tracing::Span, error: &sqlx::Error) {
    // The kind of failure only: a database's message may quote the offending values.
    let kind = match error {
        sqlx::Error::Database(e) => e
            .code()
            .map_or_else(|| "database".to_string(), |c| c.into_owned()),
        sqlx::Error::PoolTimedOut => "pool_timed_out".into(),
        sqlx::Error::PoolClosed => "pool_closed".into(),
        sqlx::Error::Io(_) => "io".into(),
        sqlx::Error::RowNotFound => return,
        _ => "other".into(),
    };
    span.record("otel.status_code", "ERROR");
    span.record("error.type", kind);
}

/// The `db.query` span of one statement, when it runs inside a trace. Statements outside any
/// span (a background loop's periodic claim) would each start a trace of one span: noise.
fn query_span(backend: Backend, sql: &str) -> tracing::Span {
    if tracing::Span::current().is_none() {
        return tracing::Span::none();
    }
    let (operation, table) = describe_sql(sql);
    let name = match table {
        Some(table) => format!("{operation} {table}"),
        None => operation.to_string(),
    };
    tracing::info_span!(
        "db.query",
        otel.name = name,
        otel.kind = "client",
        db.system = backend.system(),
        db.operation = operation,
        db.sql.table = table,
        db.statement = sql,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// The statement's operation (`SELECT`, `INSERT`, …, upper case) and the table it works on,
/// read from the SQL text: the first word, and the name after `INTO`, `UPDATE` or the first
/// `FROM`.
fn describe_sql(sql: &str) -> (&'static str, Option<&str>) {
    let mut words = sql.split_whitespace();
    let first = words.next().unwrap_or_default();
    let operation = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "BEGIN", "COMMIT", "ROLLBACK", "PRAGMA",
    ]
    .into_iter()
    .find(|op| op.eq_ignore_ascii_case(first))
    .unwrap_or("QUERY");
    let after = match operation {
        "INSERT" => "INTO",
        "UPDATE" => return (operation, words.next().and_then(identifier)),
        "SELECT" | "DELETE" | "WITH" => "FROM",
        _ => return (operation, None),
    };
    let table = words
        .skip_while(|w| !w.eq_ignore_ascii_case(after))
        .nth(1)
        .and_then(identifier);
    (operation, table)
}

/// `word` when it is a plain table name (not a subquery or an expression).
fn identifier(word: &str) -> Option<&str> {
    let name = word.trim_end_matches([',', ';']);
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
    .then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_and_table_come_from_the_sql() {
        let cases = [
            (
                "SELECT id FROM projects WHERE id = $1",
                "SELECT",
                Some("projects"),
            ),
            ("INSERT INTO files (a) VALUES ($1)", "INSERT", Some("files")),
            (
                "update deployments SET x = $1",
                "UPDATE",
                Some("deployments"),
            ),
            (
                "DELETE FROM api_keys WHERE id = $1",
                "DELETE",
                Some("api_keys"),
            ),
            (
                "SELECT CAST(COUNT(*) AS BIGINT) AS n \n FROM ai_usage WHERE user_id = $1",
                "SELECT",
                Some("ai_usage"),
            ),
            ("SELECT 1", "SELECT", None),
            ("SELECT x FROM (SELECT 1) AS t", "SELECT", None),
            ("VACUUM", "QUERY", None),
        ];
        for (sql, operation, table) in cases {
            assert_eq!(describe_sql(sql), (operation, table), "{sql}");
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn statements_get_spans_inside_a_trace_without_their_values() {
        let (recorder, _default) = crate::span_recorder::SpanRecorder::install();
        let db = Database::connect("sqlite::memory:", 1).await.unwrap();

        // Outside any span: no trace of one span per statement.
        sqlx::query("SELECT 1")
            .fetch_one(db.traced())
            .await
            .unwrap();
        assert!(recorder.spans("db.query").is_empty());

        async {
            sqlx::query("CREATE TABLE notes (id INTEGER, body TEXT)")
                .execute(db.traced())
                .await
                .unwrap();
            let mut tx = db.begin().await.unwrap();
            sqlx::query("INSERT INTO notes (id, body) VALUES ($1, $2)")
                .bind(1)
                .bind("SECRET-VALUE")
                .execute(tx.traced())
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let rows = sqlx::query("SELECT body FROM notes WHERE id = $1")
                .bind(1)
                .fetch_all(db.traced())
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            sqlx::query("INSERT INTO missing (id) VALUES ($1)")
                .bind(2)
                .execute(db.traced())
                .await
                .unwrap_err();
        }
        .instrument(tracing::info_span!("request"))
        .await;

        let queries: Vec<_> = recorder
            .spans("db.query")
            .into_iter()
            .map(|s| s.fields)
            .collect();
        let names: Vec<&str> = queries.iter().map(|q| q["otel.name"].as_str()).collect();
        assert_eq!(
            names,
            [
                "QUERY",
                "BEGIN",
                "INSERT notes",
                "COMMIT",
                "SELECT notes",
                "INSERT missing"
            ]
        );
        for query in &queries {
            assert_eq!(query["db.system"], "sqlite");
            assert!(!format!("{query:?}").contains("SECRET-VALUE"), "{query:?}");
        }
        let insert = &queries[2];
        assert_eq!(insert["db.operation"], "INSERT");
        assert_eq!(insert["db.sql.table"], "notes");
        assert_eq!(
            insert["db.statement"],
            "INSERT INTO notes (id, body) VALUES ($1, $2)"
        );
        assert!(!insert.contains_key("otel.status_code"));
        let failed = &queries[5];
        assert_eq!(failed["otel.status_code"], "ERROR");
        assert!(!failed["error.type"].is_empty());
    }
}
