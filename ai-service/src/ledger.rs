//! The usage ledger: one row per AI call, totals per user for a day or a month, and the budget
//! held by calls in progress. All SQL of ai-service lives here.

use std::time::Duration;

use anyhow::Context;
use service_runtime::db::Database;
use sqlx::{Any, Executor, Row};

use crate::provider::Usage;
use crate::task::Operation;

/// The ledger's schema history (usage rows and budget holds), for `Database::open`.
pub static MIGRATIONS: service_runtime::db::Migrations = service_runtime::migrations!();

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

/// A request to hold part of a user's monthly budget ([`UsageLedger::reserve`]).
#[derive(Debug, Clone)]
pub struct Reservation<'a> {
    /// Caller.
    pub user_id: &'a str,
    /// The most the call can cost.
    pub tokens: u64,
    /// Tokens the user may spend in the period.
    pub budget: u64,
    /// Start of the period (Unix ms): usage before it does not count.
    pub since_ms: i64,
    /// Now (Unix ms).
    pub now_ms: i64,
    /// How long the hold counts if the call never settles it (the process died): longer than
    /// any call can last.
    pub ttl: Duration,
}

/// Budget held by one call in flight ([`UsageLedger::reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldId(i64);

/// How the budget stood when a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Tokens spent in the period.
    pub spent: u64,
    /// Tokens held by calls in progress.
    pub held: u64,
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

async fn insert_usage<'c>(
    executor: impl Executor<'c, Database = Any>,
    e: &UsageEntry,
) -> anyhow::Result<()> {
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
    .execute(executor)
    .await
    .context("recording AI usage")?;
    Ok(())
}

impl UsageLedger {
    /// The ledger in `db`, whose schema `Database::open` brought up to date with `MIGRATIONS`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Records one call that held no budget (a cache hit, or any call without a budget).
    pub async fn record(&self, e: &UsageEntry) -> anyhow::Result<()> {
        insert_usage(self.db.traced(), e).await?;
        crate::metrics::record_usage(e);
        Ok(())
    }

    /// Holds `r.tokens` of `r.user_id`'s monthly budget for a call about to start, when what
    /// the user spent this month, plus what calls in progress hold, plus `r.tokens` stays
    /// within `r.budget`; otherwise refuses, saying how the budget stands.
    ///
    /// The first statement writes the user's row in `ai_budget_users`, which serialises one
    /// user's reservations (row lock on PostgreSQL, write lock on SQLite) until commit, so that
    /// concurrent calls cannot all pass a check made on the same totals. Expired holds (calls
    /// that crashed) are deleted on the way.
    pub async fn reserve(&self, r: &Reservation<'_>) -> anyhow::Result<Result<HoldId, Refusal>> {
        let mut tx = self.db.begin().await.context("beginning a budget hold")?;
        sqlx::query(
            "INSERT INTO ai_budget_users (user_id, reserved_at) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET reserved_at = excluded.reserved_at",
        )
        .bind(r.user_id)
        .bind(r.now_ms)
        .execute(tx.traced())
        .await
        .context("locking the user's budget")?;
        sqlx::query("DELETE FROM ai_budget_holds WHERE user_id = $1 AND expires_at <= $2")
            .bind(r.user_id)
            .bind(r.now_ms)
            .execute(tx.traced())
            .await
            .context("deleting expired budget holds")?;
        let spent: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS tokens \
             FROM ai_usage WHERE user_id = $1 AND created_at >= $2",
        )
        .bind(r.user_id)
        .bind(r.since_ms)
        .fetch_one(tx.traced())
        .await
        .context("reading AI token spend")?
        .try_get("tokens")
        .context("decoding token spend")?;
        let held: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(tokens), 0) AS BIGINT) AS tokens \
             FROM ai_budget_holds WHERE user_id = $1",
        )
        .bind(r.user_id)
        .fetch_one(tx.traced())
        .await
        .context("reading budget holds")?
        .try_get("tokens")
        .context("decoding budget holds")?;
        let (spent, held) = (as_u64(spent), as_u64(held));
        if spent.saturating_add(held).saturating_add(r.tokens) > r.budget {
            tx.rollback()
                .await
                .context("ending a refused budget hold")?;
            return Ok(Err(Refusal { spent, held }));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO ai_budget_holds (user_id, tokens, created_at, expires_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(r.user_id)
        .bind(as_i64(r.tokens))
        .bind(r.now_ms)
        .bind(
            r.now_ms
                .saturating_add(i64::try_from(r.ttl.as_millis()).unwrap_or(i64::MAX)),
        )
        .fetch_one(tx.traced())
        .await
        .context("holding budget")?
        .try_get("id")
        .context("decoding the budget hold id")?;
        tx.commit().await.context("committing a budget hold")?;
        Ok(Ok(HoldId(id)))
    }

    /// Records the call that `hold` was for and drops the hold, in one transaction: the tokens
    /// count as held or as spent, never both and never neither.
    pub async fn settle(&self, hold: HoldId, e: &UsageEntry) -> anyhow::Result<()> {
        let mut tx = self
            .db
            .begin()
            .await
            .context("beginning to settle a hold")?;
        sqlx::query("DELETE FROM ai_budget_holds WHERE id = $1")
            .bind(hold.0)
            .execute(tx.traced())
            .await
            .context("dropping a settled budget hold")?;
        insert_usage(tx.traced(), e).await?;
        tx.commit().await.context("committing AI usage")?;
        crate::metrics::record_usage(e);
        Ok(())
    }

    /// Drops `hold` of a call that ended without being billed.
    pub async fn release(&self, hold: HoldId) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM ai_budget_holds WHERE id = $1")
            .bind(hold.0)
            .execute(self.db.traced())
            .await
            .context("releasing a budget hold")?;
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
}

/// Budget held by one provider call: settled into the ledger when the call ends, released when
/// it fails unbilled. Dropped unsettled (the caller went away), it is released in the
/// background; a process that dies leaves it to expire.
#[derive(Debug)]
pub(crate) struct BudgetHold {
    ledger: UsageLedger,
    /// `None` when no budget is configured, or once settled or released.
    id: Option<HoldId>,
}

impl BudgetHold {
    /// The hold `id`, as [`UsageLedger::reserve`] made it.
    pub(crate) fn new(ledger: &UsageLedger, id: HoldId) -> Self {
        Self {
            ledger: ledger.clone(),
            id: Some(id),
        }
    }

    /// No hold: the call is only recorded when it ends (no budget is configured).
    pub(crate) fn none(ledger: &UsageLedger) -> Self {
        Self {
            ledger: ledger.clone(),
            id: None,
        }
    }

    /// Records the call, replacing the hold.
    pub(crate) async fn settle(mut self, entry: &UsageEntry) -> anyhow::Result<()> {
        match self.id.take() {
            Some(id) => self.ledger.settle(id, entry).await,
            None => self.ledger.record(entry).await,
        }
    }

    /// Gives the held tokens back; a failure only leaves the hold to expire.
    pub(crate) async fn release(mut self) {
        if let Some(id) = self.id.take()
            && let Err(e) = self.ledger.release(id).await
        {
            tracing::warn!(error = format!("{e:#}"), "cannot release a budget hold");
        }
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else {
            return;
        };
        let ledger = self.ledger.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = ledger.release(id).await {
                    tracing::warn!(error = format!("{e:#}"), "cannot release a budget hold");
                }
            });
        }
    }
}
