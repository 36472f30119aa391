//! The usage ledger: one row per AI call, totals per user for a day or a month. All SQL of
//! ai-service lives here.

use anyhow::Context;
use service_runtime::db::Database;
use sqlx::Row;

use crate::provider::Usage;
use crate::task::Operation;

pub(crate) static MIGRATIONS: service_runtime::db::Migrations = service_runtime::migrations!();

/// How a call ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in full.
    Ok,
    /// The provider failed after tokens had been billed (mid-stream).
    Failed,
    /// The client went away mid-stream.
    Cancelled,
}

impl Outcome {
    /// Name in the ledger and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One ledger row.
#[derive(Debug, Clone)]
pub struct UsageEntry {
    /// Caller.
    pub user_id: String,
    /// Operation.
    pub operation: Operation,
    /// Model that answered (or would have, for cache hits).
    pub model: String,
    /// Tokens billed (zero for cache hits).
    pub usage: Usage,
    /// Answered from the prompt cache.
    pub cached: bool,
    /// How it ended.
    pub outcome: Outcome,
    /// Time spent in ai-service, provider included.
    pub latency_ms: i64,
    /// Time spent waiting for the provider, when it was called.
    pub provider_ms: Option<i64>,
    /// Project of a chat.
    pub project_id: Option<String>,
}

/// Totals of one operation (or all) over a period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Calls.
    pub requests: u64,
    /// Calls answered from cache.
    pub cached_requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

/// The usage table.
#[derive(Debug, Clone)]
pub struct UsageLedger {
    db: Database,
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn as_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl UsageLedger {
    /// The ledger in `db`, whose schema `Database::open` brought up to date with `MIGRATIONS`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records one call.
    pub async fn record(&self, e: &UsageEntry) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO ai_usage (user_id, operation, model, input_tokens, output_tokens, \
             cache_read_tokens, cache_write_tokens, cached, outcome, latency_ms, provider_ms, \
             project_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&e.user_id)
        .bind(e.operation.as_str())
        .bind(&e.model)
        .bind(as_i64(e.usage.input_tokens))
        .bind(as_i64(e.usage.output_tokens))
        .bind(as_i64(e.usage.cache_read_tokens))
        .bind(as_i64(e.usage.cache_write_tokens))
        .bind(i32::from(e.cached))
        .bind(e.outcome.as_str())
        .bind(e.latency_ms)
        .bind(e.provider_ms)
        .bind(e.project_id.as_deref())
        .bind(crate::clock::now_ms())
        .execute(self.db.traced())
        .await
        .context("recording AI usage")?;
        crate::metrics::record_usage(e);
        Ok(())
    }

    /// Totals of `user_id` since `since_ms`, by operation name, sorted by name.
    pub async fn totals_since(
        &self,
        user_id: &str,
        since_ms: i64,
    ) -> anyhow::Result<Vec<(String, Totals)>> {
        // SUM of BIGINT is NUMERIC on PostgreSQL, which the Any driver cannot decode: cast back.
        let rows = sqlx::query(
            "SELECT operation, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(cached), 0) AS BIGINT) AS cached_requests, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens \
             FROM ai_usage WHERE user_id = $1 AND created_at >= $2 \
             GROUP BY operation ORDER BY operation",
        )
        .bind(user_id)
        .bind(since_ms)
        .fetch_all(self.db.traced())
        .await
        .context("reading AI usage totals")?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<String, _>("operation")?,
                    Totals {
                        requests: as_u64(row.try_get("requests")?),
                        cached_requests: as_u64(row.try_get("cached_requests")?),
                        input_tokens: as_u64(row.try_get("input_tokens")?),
                        output_tokens: as_u64(row.try_get("output_tokens")?),
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .context("decoding AI usage totals")
    }

    /// Tokens (input + output) `user_id` spent since `since_ms`.
    pub async fn tokens_since(&self, user_id: &str, since_ms: i64) -> anyhow::Result<u64> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens \
             FROM ai_usage WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(user_id)
        .bind(since_ms)
        .fetch_one(self.db.traced())
        .await
        .context("reading AI token spend")?;
        Ok(as_u64(
            row.try_get("tokens").context("decoding token spend")?,
        ))
    }
}
