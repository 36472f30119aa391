//! The `db.query` span of each statement run through [`Database::traced`] or a
//! [`TracedTransaction`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::error::BoxDynError;
use sqlx::{Any, AnyConnection, AnyPool, Describe, Either, Execute, Executor, SqlStr, Transaction};
use tokio_stream::Stream;
use tracing::Instrument;

use super::{Backend, Database};

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
        let query = Opened::new(query);
        let span = query_span(self.backend, query.sql.as_str());
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
        let query = Opened::new(query);
        let span = query_span(self.backend, query.sql.as_str());
        let future = {
            let _entered = span.enter();
            self.inner.fetch_optional(query)
        };
        Box::pin(async move {
            let result = future.instrument(span.clone()).await;
            record_outcome(&span, result)
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.inner.describe(sql)
    }
}

/// A query taken apart so that its SQL can name the span before it runs: `Execute::sql`
/// consumes the query, so its statement, arguments and caching flag are kept beside the SQL and
/// handed on unchanged (an argument that failed to encode fails the query as before).
struct Opened {
    sql: SqlStr,
    statement: Option<AnyStatement>,
    arguments: Option<Result<Option<AnyArguments>, BoxDynError>>,
    persistent: bool,
}

impl Opened {
    fn new<'q>(mut query: impl Execute<'q, Any>) -> Self {
        let statement = query.statement().cloned();
        let persistent = query.persistent();
        let arguments = Some(query.take_arguments());
        Self {
            sql: query.sql(),
            statement,
            arguments,
            persistent,
        }
    }
}

impl Execute<'_, Any> for Opened {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement> {
        self.statement.as_ref()
    }

    fn take_arguments(&mut self) -> Result<Option<AnyArguments>, BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
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
