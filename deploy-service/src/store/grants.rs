//! The SQL of deployments' file grants (`deployment_file_grants`): the grant the gateway minted
//! with a deployment's creation, kept until the deployment's files are uploaded.

use secrecy::{ExposeSecret, SecretString};
use service_runtime::db::{Database, TracedTransaction};
use sqlx::Row;

use crate::error::{DbContext, Result};

/// Keeps `grant` for deployment `id`, in the transaction that creates it, so the poller never
/// sees the deployment without its grant.
pub(super) async fn insert(
    tx: &mut TracedTransaction,
    id: &str,
    grant: &SecretString,
) -> Result<()> {
    sqlx::query("INSERT INTO deployment_file_grants (deployment_id, grant_token) VALUES ($1, $2)")
        .bind(id)
        .bind(grant.expose_secret())
        .execute(tx.traced())
        .await
        .db("insert file grant")?;
    Ok(())
}

/// The grant kept for deployment `id`.
pub(super) async fn get(db: &Database, id: &str) -> Result<Option<SecretString>> {
    let row =
        sqlx::query("SELECT grant_token FROM deployment_file_grants WHERE deployment_id = $1")
            .bind(id)
            .fetch_optional(db.traced())
            .await
            .db("select file grant")?;
    row.map(|row| {
        row.try_get::<String, _>("grant_token")
            .map(SecretString::from)
            .db("read file grant")
    })
    .transpose()
    .map_err(Into::into)
}
