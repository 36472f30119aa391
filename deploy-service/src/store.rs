//! `DeploymentStore`: all SQL of deploy-service, on SQLite or PostgreSQL through one `AnyPool`.
//!
//! Every change of state is a conditional update (`WHERE state = <expected>`) committed in the
//! same transaction as its event, so the poller and the RPCs never overwrite each other's
//! decisions and nothing is reported that is not stored.

use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;
use service_runtime::db::{Backend, Database, TracedTransaction};
use sqlx::Row;
use sqlx::any::AnyRow;

pub use service_runtime::page_token::Cursor;
use service_runtime::page_token::PageTokens;

use crate::error::{DbContext, Error, Result};

/// Page tokens of `ListDeployments`, bound to the caller and the project filter.
pub const DEPLOYMENT_PAGES: PageTokens = PageTokens::new("autocrea.deploy.v1.deployments");
use crate::model::{Account, EnvVars, Provider, State, Target};

mod connections;
mod grants;
pub use connections::{ConnectionRecord, ConnectionStore, HomeRecord, NewConnection};

const COLUMNS: &str = "id, owner_id, project_id, provider, target, state, rollback_of, env_json, \
     request_digest, provider_deployment_id, provider_site_id, provider_state, \
     url, error, created_at_ms, updated_at_ms, finished_at_ms, polls, failures, account";

const ACTIVE: &str = "('queued', 'uploading', 'building')";

/// A deployment as stored.
#[derive(Debug, Clone)]
pub struct DeploymentRecord {
    /// UUID v7.
    pub id: String,
    /// The user who asked for it.
    pub owner_id: String,
    /// The project shipped.
    pub project_id: String,
    /// Where to.
    pub provider: Provider,
    /// Production or preview.
    pub target: Target,
    /// Where it is in its life.
    pub state: State,
    /// For a rollback: the deployment made live again.
    pub rollback_of: Option<String>,
    /// Variables still to send to the provider.
    pub env: EnvVars,
    /// Digest of the creating request.
    pub request_digest: String,
    /// The provider's id.
    pub provider_deployment_id: Option<String>,
    /// The provider's site/project/service id.
    pub provider_site_id: Option<String>,
    /// The provider's last reported state name.
    pub provider_state: Option<String>,
    /// Public URL.
    pub url: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms.
    pub updated_at_ms: i64,
    /// Unix ms of reaching a final state.
    pub finished_at_ms: Option<i64>,
    /// Status reads so far (drives the poll back-off).
    pub polls: i64,
    /// Consecutive transient failures.
    pub failures: i64,
    /// Whose provider account it uses.
    pub account: Account,
}

/// One event of the log.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Increasing sequence number.
    pub sequence: i64,
    /// The deployment.
    pub deployment_id: String,
    /// State after the event.
    pub state: State,
    /// What happened.
    pub message: String,
    /// URL known then.
    pub url: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
}

/// The fields of a new deployment.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    /// Owner.
    pub owner_id: String,
    /// Project.
    pub project_id: String,
    /// Provider.
    pub provider: Provider,
    /// Target.
    pub target: Target,
    /// Variables to set.
    pub env: EnvVars,
    /// Idempotency key.
    pub idempotency_key: Option<String>,
    /// Digest of the request fields.
    pub request_digest: String,
    /// For a rollback: the deployment to make live again.
    pub rollback_of: Option<String>,
    /// The provider site the rollback target lives on.
    pub provider_site_id: Option<String>,
    /// First event's message.
    pub message: String,
    /// Whose provider account it uses.
    pub account: Account,
    /// The owner's grant to read the project's files, for the upload (none for a rollback).
    pub files_grant: Option<SecretString>,
}

/// What a state change also records. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// The event's message.
    pub message: String,
    /// Provider's deployment id.
    pub provider_deployment_id: Option<String>,
    /// Provider's site id.
    pub provider_site_id: Option<String>,
    /// Provider's state name.
    pub provider_state: Option<String>,
    /// URL.
    pub url: Option<String>,
    /// Error text.
    pub error: Option<String>,
    /// Forget the variables (they are at the provider now).
    pub clear_env: bool,
}

impl Change {
    /// A change that only logs `message`.
    pub fn message(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }

    /// A change into `error` that says why, as the event and as the deployment's error.
    pub fn failed(reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            error: Some(reason.clone()),
            ..Self::message(reason)
        }
    }
}

/// Deployments and events in SQL.
#[derive(Debug, Clone)]
pub struct DeploymentStore {
    db: Database,
}

impl DeploymentStore {
    /// A store over `db`, whose migrations have run.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Inserts a queued deployment with its first event. With an idempotency key already used
    /// by the owner, inserts nothing and returns the existing deployment and `false`.
    pub async fn insert(&self, new: NewDeployment) -> Result<(DeploymentRecord, bool)> {
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.db.begin().await.db("begin insert")?;
        let inserted = sqlx::query(
            "INSERT INTO deployments (id, owner_id, project_id, provider, target, state, \
             rollback_of, env_json, idempotency_key, request_digest, provider_site_id, \
             created_at_ms, updated_at_ms, next_poll_at_ms, account) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11, $11, $11, $12) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&id)
        .bind(&new.owner_id)
        .bind(&new.project_id)
        .bind(new.provider.as_str())
        .bind(new.target.as_str())
        .bind(new.rollback_of.as_deref())
        .bind(new.env.to_json())
        .bind(new.idempotency_key.as_deref())
        .bind(&new.request_digest)
        .bind(new.provider_site_id.as_deref())
        .bind(now)
        .bind(new.account.as_str())
        .execute(tx.traced())
        .await
        .db("insert deployment")?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.db("rollback insert")?;
            let key = new.idempotency_key.as_deref().unwrap_or_default();
            let existing = self
                .by_idempotency_key(&new.owner_id, key)
                .await?
                .ok_or_else(|| anyhow::anyhow!("insert conflicted but no row holds the key"))?;
            return Ok((existing, false));
        }
        insert_event(&mut tx, &id, &new.message, now).await?;
        if let Some(grant) = &new.files_grant {
            grants::insert(&mut tx, &id, grant).await?;
        }
        // The row as created, read before the commit: once committed, the engine may pick it up
        // and move it on before a later read, and the answer must be what was created (`queued`).
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(&id)
        .fetch_one(tx.traced())
        .await
        .db("select created deployment")?;
        let record = record(&row)?;
        tx.commit().await.db("commit insert")?;
        Ok((record, true))
    }

    /// The grant to read deployment `id`'s project files, as kept at its creation.
    pub async fn files_grant(&self, id: &str) -> Result<Option<SecretString>> {
        grants::get(&self.db, id).await
    }

    /// The owner's deployment created with `key`.
    pub async fn by_idempotency_key(
        &self,
        owner: &str,
        key: &str,
    ) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE owner_id = $1 AND idempotency_key = $2"
        )))
        .bind(owner)
        .bind(key)
        .fetch_optional(self.db.traced())
        .await
        .db("select deployment by idempotency key")?;
        row.map(|r| record(&r)).transpose()
    }

    /// The deployment `id` if it belongs to `owner`.
    pub async fn get(&self, owner: &str, id: &str) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE id = $1 AND owner_id = $2"
        )))
        .bind(id)
        .bind(owner)
        .fetch_optional(self.db.traced())
        .await
        .db("select deployment")?;
        row.map(|r| record(&r)).transpose()
    }

    /// The deployment `id`, whoever owns it (for the poller).
    pub async fn get_any(&self, id: &str) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db.traced())
        .await
        .db("select deployment")?;
        row.map(|r| record(&r)).transpose()
    }

    /// The URL of the owner's last ready deployment of `project` on `provider`.
    pub async fn last_ready_url(
        &self,
        owner: &str,
        project: &str,
        provider: Provider,
    ) -> Result<Option<String>> {
        let url: Option<Option<String>> = sqlx::query_scalar(
            "SELECT url FROM deployments WHERE owner_id = $1 AND project_id = $2 \
             AND provider = $3 AND state = 'ready' ORDER BY created_at_ms DESC, id DESC LIMIT 1",
        )
        .bind(owner)
        .bind(project)
        .bind(provider.as_str())
        .fetch_optional(self.db.traced())
        .await
        .db("select last ready url")?;
        Ok(url.flatten())
    }

    /// Up to `limit` of the owner's deployments after `cursor`, newest first, optionally of one
    /// project.
    pub async fn list(
        &self,
        owner: &str,
        project: Option<&str>,
        cursor: Option<&Cursor>,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>> {
        let (created, id) = match cursor {
            Some(c) => (c.created_at_ms, c.id.as_str()),
            None => (i64::MAX, ""),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE owner_id = $1 \
             AND ($2 = '' OR project_id = $2) \
             AND (created_at_ms < $3 OR (created_at_ms = $3 AND id < $4)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $5"
        )))
        .bind(owner)
        .bind(project.unwrap_or_default())
        .bind(created)
        .bind(id)
        .bind(limit)
        .fetch_all(self.db.traced())
        .await
        .db("list deployments")?;
        rows.iter().map(record).collect()
    }

    /// The last ready deployment of the same owner, project and provider created before `of`.
    pub async fn previous_ready(&self, of: &DeploymentRecord) -> Result<Option<DeploymentRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deployments WHERE owner_id = $1 AND project_id = $2 \
             AND provider = $3 AND state = 'ready' AND provider_deployment_id IS NOT NULL \
             AND (created_at_ms < $4 OR (created_at_ms = $4 AND id < $5)) \
             ORDER BY created_at_ms DESC, id DESC LIMIT 1"
        )))
        .bind(&of.owner_id)
        .bind(&of.project_id)
        .bind(of.provider.as_str())
        .bind(of.created_at_ms)
        .bind(&of.id)
        .fetch_optional(self.db.traced())
        .await
        .db("select previous ready deployment")?;
        row.map(|r| record(&r)).transpose()
    }

    /// Moves `id` from `from` to `to` with `change` and logs the event, in one transaction.
    /// Returns `false` (changing nothing) when the deployment is no longer in `from`.
    pub async fn transition(
        &self,
        id: &str,
        from: State,
        to: State,
        change: Change,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.db.begin().await.db("begin transition")?;
        let updated = sqlx::query(
            "UPDATE deployments SET state = $1, updated_at_ms = $2, finished_at_ms = $3, \
             provider_deployment_id = COALESCE($4, provider_deployment_id), \
             provider_site_id = COALESCE($5, provider_site_id), \
             provider_state = COALESCE($6, provider_state), \
             url = COALESCE($7, url), error = COALESCE($8, error), \
             env_json = CASE WHEN $9 = 1 THEN '{}' ELSE env_json END, failures = 0 \
             WHERE id = $10 AND state = $11",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(to.is_final().then_some(now))
        .bind(change.provider_deployment_id.as_deref())
        .bind(change.provider_site_id.as_deref())
        .bind(change.provider_state.as_deref())
        .bind(change.url.as_deref())
        .bind(change.error.as_deref())
        .bind(i64::from(change.clear_env))
        .bind(id)
        .bind(from.as_str())
        .execute(tx.traced())
        .await
        .db("update deployment state")?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await.db("rollback transition")?;
            return Ok(false);
        }
        insert_event(&mut tx, id, &change.message, now).await?;
        tx.commit().await.db("commit transition")?;
        Ok(true)
    }

    /// Logs a new provider state of a deployment that stays in `state`.
    pub async fn progress(
        &self,
        id: &str,
        state: State,
        provider_state: &str,
        url: Option<&str>,
        message: &str,
    ) -> Result<bool> {
        let now = now_ms();
        let mut tx = self.db.begin().await.db("begin progress")?;
        let updated = sqlx::query(
            "UPDATE deployments SET provider_state = $1, url = COALESCE($2, url), \
             updated_at_ms = $3 WHERE id = $4 AND state = $5",
        )
        .bind(provider_state)
        .bind(url)
        .bind(now)
        .bind(id)
        .bind(state.as_str())
        .execute(tx.traced())
        .await
        .db("update provider state")?
        .rows_affected();
        if updated == 0 {
            tx.rollback().await.db("rollback progress")?;
            return Ok(false);
        }
        insert_event(&mut tx, id, message, now).await?;
        tx.commit().await.db("commit progress")?;
        Ok(true)
    }

    /// Leases up to `limit` active deployments that are due and not leased by a live replica.
    /// PostgreSQL skips rows other replicas are claiming at the same moment; SQLite serialises
    /// writers, so its conditional update alone is atomic.
    pub async fn claim_due(
        &self,
        replica: &str,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeploymentRecord>> {
        let now = now_ms();
        let lock = match self.db.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE deployments SET lease_owner = $1, lease_until_ms = $2 \
             WHERE id IN (SELECT id FROM deployments WHERE state IN {ACTIVE} \
                 AND next_poll_at_ms <= $3 AND lease_until_ms < $3 \
                 ORDER BY next_poll_at_ms LIMIT $4 {lock}) \
             AND lease_until_ms < $3 \
             RETURNING {COLUMNS}"
        )))
        .bind(replica)
        .bind(lease_until_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.traced())
        .await
        .db("claim due deployments")?;
        rows.iter().map(record).collect()
    }

    /// Extends this replica's lease on `id` (a long upload must not let another replica take
    /// the deployment over). Returns `false` when the lease is no longer ours.
    pub async fn extend_lease(&self, id: &str, replica: &str, lease_until_ms: i64) -> Result<bool> {
        let extended = sqlx::query(
            "UPDATE deployments SET lease_until_ms = $1 WHERE id = $2 AND lease_owner = $3",
        )
        .bind(lease_until_ms)
        .bind(id)
        .bind(replica)
        .execute(self.db.traced())
        .await
        .db("extend lease")?
        .rows_affected();
        Ok(extended == 1)
    }

    /// Gives the lease on `id` back and schedules its next look.
    pub async fn release(
        &self,
        id: &str,
        replica: &str,
        next_poll_at_ms: i64,
        polls: i64,
        failures: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE deployments SET lease_owner = NULL, lease_until_ms = 0, \
             next_poll_at_ms = $1, polls = $2, failures = $3 \
             WHERE id = $4 AND lease_owner = $5",
        )
        .bind(next_poll_at_ms)
        .bind(polls)
        .bind(failures)
        .bind(id)
        .bind(replica)
        .execute(self.db.traced())
        .await
        .db("release lease")?;
        Ok(())
    }

    /// Gives back every lease of `replica` (at shutdown, so another replica or the restarted
    /// process takes over at once).
    pub async fn release_all(&self, replica: &str) -> Result<u64> {
        let released = sqlx::query(
            "UPDATE deployments SET lease_owner = NULL, lease_until_ms = 0 WHERE lease_owner = $1",
        )
        .bind(replica)
        .execute(self.db.traced())
        .await
        .db("release leases")?
        .rows_affected();
        Ok(released)
    }

    /// Events of `id` after `sequence`, oldest first.
    pub async fn events_after(&self, id: &str, sequence: i64) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT sequence, deployment_id, state, message, url, created_at_ms \
             FROM deployment_events WHERE deployment_id = $1 AND sequence > $2 \
             ORDER BY sequence LIMIT 1000",
        )
        .bind(id)
        .bind(sequence)
        .fetch_all(self.db.traced())
        .await
        .db("select events")?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state").db("read event state")?;
                Ok(EventRecord {
                    sequence: row.try_get("sequence").db("read event sequence")?,
                    deployment_id: row.try_get("deployment_id").db("read event deployment")?,
                    state: State::parse(&state).ok_or_else(|| corrupt("state", &state))?,
                    message: row.try_get("message").db("read event message")?,
                    url: row.try_get("url").db("read event url")?,
                    created_at_ms: row.try_get("created_at_ms").db("read event time")?,
                })
            })
            .collect()
    }
}

async fn insert_event(tx: &mut TracedTransaction, id: &str, message: &str, now: i64) -> Result<()> {
    // State and URL come from the row as just written, so the event says exactly what is stored.
    sqlx::query(
        "INSERT INTO deployment_events (deployment_id, state, message, url, created_at_ms) \
         SELECT id, state, $1, url, $2 FROM deployments WHERE id = $3",
    )
    .bind(message)
    .bind(now)
    .bind(id)
    .execute(tx.traced())
    .await
    .db("insert event")?;
    Ok(())
}

fn record(row: &AnyRow) -> Result<DeploymentRecord> {
    let text = |name: &'static str| -> Result<String> { Ok(row.try_get(name).db(name)?) };
    let optional =
        |name: &'static str| -> Result<Option<String>> { Ok(row.try_get(name).db(name)?) };
    let number = |name: &'static str| -> Result<i64> { Ok(row.try_get(name).db(name)?) };
    let provider = text("provider")?;
    let target = text("target")?;
    let state = text("state")?;
    let account = text("account")?;
    Ok(DeploymentRecord {
        id: text("id")?,
        owner_id: text("owner_id")?,
        project_id: text("project_id")?,
        provider: Provider::parse(&provider).map_err(|_| corrupt("provider", &provider))?,
        target: Target::parse(Some(&target)).map_err(|_| corrupt("target", &target))?,
        state: State::parse(&state).ok_or_else(|| corrupt("state", &state))?,
        rollback_of: optional("rollback_of")?,
        env: EnvVars::from_json(&text("env_json")?),
        request_digest: text("request_digest")?,
        provider_deployment_id: optional("provider_deployment_id")?,
        provider_site_id: optional("provider_site_id")?,
        provider_state: optional("provider_state")?,
        url: optional("url")?,
        error: optional("error")?,
        created_at_ms: number("created_at_ms")?,
        updated_at_ms: number("updated_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms").db("finished_at_ms")?,
        polls: number("polls")?,
        failures: number("failures")?,
        account: Account::parse(&account).ok_or_else(|| corrupt("account", &account))?,
    })
}

pub(crate) fn corrupt(column: &str, value: &str) -> Error {
    Error::Internal(anyhow::anyhow!("corrupt {column} {value:?} in deployments"))
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
