//! `ConnectionStore`: the SQL of users' provider connections (tokens sealed, see
//! `crate::secrets`) and of their projects' homes at the providers. Every statement is scoped to
//! the owner, except the re-encryption pass, which walks every row sealed with an old key.

use service_runtime::db::Database;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{corrupt, now_ms};
use crate::error::{DbContext, Result};
use crate::model::Provider;

const CONNECTION_COLUMNS: &str = "owner_id, provider, account_id, account_name, token_sealed, \
     key_id, token_last4, team_id, project_id, environment_id, created_at_ms, last_used_at_ms";

/// A connection as stored; the token stays sealed.
#[derive(Clone)]
pub struct ConnectionRecord {
    /// The user.
    pub owner_id: String,
    /// The provider.
    pub provider: Provider,
    /// The account as the provider reports it.
    pub account_id: String,
    /// Its name.
    pub account_name: String,
    /// The sealed token (`crate::secrets`).
    pub token_sealed: String,
    /// The key it is sealed with.
    pub key_id: String,
    /// Last four characters of the token.
    pub token_last4: String,
    /// Vercel team.
    pub team_id: Option<String>,
    /// Railway project.
    pub project_id: Option<String>,
    /// Railway environment.
    pub environment_id: Option<String>,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last deployment step that used it.
    pub last_used_at_ms: Option<i64>,
}

impl std::fmt::Debug for ConnectionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionRecord")
            .field("owner_id", &self.owner_id)
            .field("provider", &self.provider)
            .field("account_id", &self.account_id)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// What saving a connection writes.
#[derive(Debug, Clone)]
pub struct NewConnection {
    /// The account as the provider reports it.
    pub account_id: String,
    /// Its name.
    pub account_name: String,
    /// The sealed token.
    pub token_sealed: String,
    /// The key it is sealed with.
    pub key_id: String,
    /// Last four characters of the token.
    pub token_last4: String,
    /// Vercel team.
    pub team_id: Option<String>,
    /// Railway project.
    pub project_id: Option<String>,
    /// Railway environment.
    pub environment_id: Option<String>,
}

/// A row the re-encryption pass must reseal.
#[derive(Debug, Clone)]
pub struct StaleToken {
    /// The user.
    pub owner_id: String,
    /// The provider (as stored).
    pub provider: String,
    /// The key it is sealed with now.
    pub key_id: String,
    /// The sealed token.
    pub token_sealed: String,
}

/// A project's home at a provider.
#[derive(Debug, Clone)]
pub struct HomeRecord {
    /// The provider.
    pub provider: Provider,
    /// The account it lives in.
    pub account_id: String,
    /// Vercel project id, Netlify site id, Railway service id.
    pub target_id: String,
    /// Its name at the provider.
    pub target_name: String,
    /// Unix ms.
    pub created_at_ms: i64,
}

/// Connections and homes in SQL.
#[derive(Debug, Clone)]
pub struct ConnectionStore {
    db: Database,
}

impl ConnectionStore {
    /// A store over `db`, whose migrations have run.
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Saves (or replaces) the owner's connection to `provider`.
    pub async fn upsert(
        &self,
        owner: &str,
        provider: Provider,
        new: NewConnection,
    ) -> Result<ConnectionRecord> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO provider_connections (owner_id, provider, account_id, account_name, \
             token_sealed, key_id, token_last4, team_id, project_id, environment_id, \
             created_at_ms, last_used_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL) \
             ON CONFLICT (owner_id, provider) DO UPDATE SET account_id = excluded.account_id, \
             account_name = excluded.account_name, token_sealed = excluded.token_sealed, \
             key_id = excluded.key_id, token_last4 = excluded.token_last4, \
             team_id = excluded.team_id, project_id = excluded.project_id, \
             environment_id = excluded.environment_id, created_at_ms = excluded.created_at_ms, \
             last_used_at_ms = NULL",
        )
        .bind(owner)
        .bind(provider.as_str())
        .bind(&new.account_id)
        .bind(&new.account_name)
        .bind(&new.token_sealed)
        .bind(&new.key_id)
        .bind(&new.token_last4)
        .bind(new.team_id.as_deref())
        .bind(new.project_id.as_deref())
        .bind(new.environment_id.as_deref())
        .bind(now)
        .execute(self.db.traced())
        .await
        .db("upsert connection")?;
        self.get(owner, provider)
            .await?
            .ok_or_else(|| anyhow::anyhow!("connection vanished after its upsert").into())
    }

    /// The owner's connection to `provider`.
    pub async fn get(&self, owner: &str, provider: Provider) -> Result<Option<ConnectionRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM provider_connections \
             WHERE owner_id = $1 AND provider = $2"
        )))
        .bind(owner)
        .bind(provider.as_str())
        .fetch_optional(self.db.traced())
        .await
        .db("select connection")?;
        row.map(|r| connection(&r)).transpose()
    }

    /// Every connection of the owner, by provider name.
    pub async fn list(&self, owner: &str) -> Result<Vec<ConnectionRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CONNECTION_COLUMNS} FROM provider_connections WHERE owner_id = $1 \
             ORDER BY provider"
        )))
        .bind(owner)
        .fetch_all(self.db.traced())
        .await
        .db("list connections")?;
        rows.iter().map(connection).collect()
    }

    /// Removes the owner's connection to `provider`; `false` when there was none.
    pub async fn delete(&self, owner: &str, provider: Provider) -> Result<bool> {
        let deleted =
            sqlx::query("DELETE FROM provider_connections WHERE owner_id = $1 AND provider = $2")
                .bind(owner)
                .bind(provider.as_str())
                .execute(self.db.traced())
                .await
                .db("delete connection")?
                .rows_affected();
        Ok(deleted > 0)
    }

    /// Records that a deployment step used the connection now.
    pub async fn touch(&self, owner: &str, provider: Provider) -> Result<()> {
        sqlx::query(
            "UPDATE provider_connections SET last_used_at_ms = $1 \
             WHERE owner_id = $2 AND provider = $3",
        )
        .bind(now_ms())
        .bind(owner)
        .bind(provider.as_str())
        .execute(self.db.traced())
        .await
        .db("touch connection")?;
        Ok(())
    }

    /// Up to `limit` rows sealed with another key than `current`.
    pub async fn stale(&self, current: &str, limit: i64) -> Result<Vec<StaleToken>> {
        let rows = sqlx::query(
            "SELECT owner_id, provider, key_id, token_sealed FROM provider_connections \
             WHERE key_id <> $1 ORDER BY owner_id, provider LIMIT $2",
        )
        .bind(current)
        .bind(limit)
        .fetch_all(self.db.traced())
        .await
        .db("select stale tokens")?;
        rows.iter()
            .map(|row| {
                Ok(StaleToken {
                    owner_id: row.try_get("owner_id").db("owner_id")?,
                    provider: row.try_get("provider").db("provider")?,
                    key_id: row.try_get("key_id").db("key_id")?,
                    token_sealed: row.try_get("token_sealed").db("token_sealed")?,
                })
            })
            .collect()
    }

    /// Replaces a sealed token if it is still the one read (a connection saved meanwhile wins).
    pub async fn reseal(&self, old: &StaleToken, key_id: &str, sealed: &str) -> Result<bool> {
        let updated = sqlx::query(
            "UPDATE provider_connections SET key_id = $1, token_sealed = $2 \
             WHERE owner_id = $3 AND provider = $4 AND key_id = $5 AND token_sealed = $6",
        )
        .bind(key_id)
        .bind(sealed)
        .bind(&old.owner_id)
        .bind(&old.provider)
        .bind(&old.key_id)
        .bind(&old.token_sealed)
        .execute(self.db.traced())
        .await
        .db("reseal token")?
        .rows_affected();
        Ok(updated == 1)
    }

    /// The home of the owner's `project` at `provider`.
    pub async fn home(
        &self,
        owner: &str,
        project: &str,
        provider: Provider,
    ) -> Result<Option<HomeRecord>> {
        let row = sqlx::query(
            "SELECT provider, account_id, target_id, target_name, created_at_ms \
             FROM provider_homes WHERE owner_id = $1 AND project_id = $2 AND provider = $3",
        )
        .bind(owner)
        .bind(project)
        .bind(provider.as_str())
        .fetch_optional(self.db.traced())
        .await
        .db("select home")?;
        row.map(|r| home(&r)).transpose()
    }

    /// Every home of the owner's `project`, by provider name.
    pub async fn homes(&self, owner: &str, project: &str) -> Result<Vec<HomeRecord>> {
        let rows = sqlx::query(
            "SELECT provider, account_id, target_id, target_name, created_at_ms \
             FROM provider_homes WHERE owner_id = $1 AND project_id = $2 ORDER BY provider",
        )
        .bind(owner)
        .bind(project)
        .fetch_all(self.db.traced())
        .await
        .db("list homes")?;
        rows.iter().map(home).collect()
    }

    /// Remembers the home of the owner's `project` at its provider, unless one in the same
    /// account was remembered meanwhile (another replica's first deploy of the project): the
    /// home remembered first wins, and is returned.
    pub async fn save_home(
        &self,
        owner: &str,
        project: &str,
        home: &HomeRecord,
    ) -> Result<HomeRecord> {
        sqlx::query(
            "INSERT INTO provider_homes (owner_id, project_id, provider, account_id, target_id, \
             target_name, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (owner_id, project_id, provider) DO UPDATE SET \
             account_id = excluded.account_id, target_id = excluded.target_id, \
             target_name = excluded.target_name, created_at_ms = excluded.created_at_ms \
             WHERE provider_homes.account_id <> excluded.account_id",
        )
        .bind(owner)
        .bind(project)
        .bind(home.provider.as_str())
        .bind(&home.account_id)
        .bind(&home.target_id)
        .bind(&home.target_name)
        .bind(home.created_at_ms)
        .execute(self.db.traced())
        .await
        .db("save home")?;
        self.home(owner, project, home.provider)
            .await?
            .ok_or_else(|| anyhow::anyhow!("home vanished after it was saved").into())
    }

    /// Forgets every home of the owner's `project`; returns how many.
    pub async fn forget_project(&self, owner: &str, project: &str) -> Result<u64> {
        let forgotten =
            sqlx::query("DELETE FROM provider_homes WHERE owner_id = $1 AND project_id = $2")
                .bind(owner)
                .bind(project)
                .execute(self.db.traced())
                .await
                .db("forget homes")?
                .rows_affected();
        Ok(forgotten)
    }
}

fn provider(row: &AnyRow) -> Result<Provider> {
    let raw: String = row.try_get("provider").db("provider")?;
    Provider::parse(&raw).map_err(|_| corrupt("provider", &raw))
}

fn connection(row: &AnyRow) -> Result<ConnectionRecord> {
    let text = |name: &'static str| -> Result<String> { Ok(row.try_get(name).db(name)?) };
    let optional =
        |name: &'static str| -> Result<Option<String>> { Ok(row.try_get(name).db(name)?) };
    Ok(ConnectionRecord {
        owner_id: text("owner_id")?,
        provider: provider(row)?,
        account_id: text("account_id")?,
        account_name: text("account_name")?,
        token_sealed: text("token_sealed")?,
        key_id: text("key_id")?,
        token_last4: text("token_last4")?,
        team_id: optional("team_id")?,
        project_id: optional("project_id")?,
        environment_id: optional("environment_id")?,
        created_at_ms: row.try_get("created_at_ms").db("created_at_ms")?,
        last_used_at_ms: row.try_get("last_used_at_ms").db("last_used_at_ms")?,
    })
}

fn home(row: &AnyRow) -> Result<HomeRecord> {
    Ok(HomeRecord {
        provider: provider(row)?,
        account_id: row.try_get("account_id").db("account_id")?,
        target_id: row.try_get("target_id").db("target_id")?,
        target_name: row.try_get("target_name").db("target_name")?,
        created_at_ms: row.try_get("created_at_ms").db("created_at_ms")?,
    })
}
