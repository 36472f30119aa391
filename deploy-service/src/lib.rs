//! deploy-service: ships a project's files to Vercel, Netlify or Railway over their HTTP APIs and
//! follows each deployment to a final state, over gRPC (`autocrea.deploy.v1.DeployService`),
//! with its state machine and event log in SQLite or PostgreSQL.
//!
//! The public surface is [`Config`] and [`run`]; `main.rs` and the all-in-one binary use both,
//! and the integration tests start the real server through [`run`] on port 0.

mod config;
mod connections;
mod engine;
mod error;
mod metrics;
mod model;
mod projects;
mod providers;
mod secrets;
mod service;
mod store;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use autocrea_proto::deploy::v1::deploy_service_server::DeployServiceServer;
use service_runtime::db::Database;
use service_runtime::grpc::MAX_MESSAGE_SIZE;
use service_runtime::identity::{CallerVerifier, audience};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    Config, DEFAULT_NETLIFY_API_URL, DEFAULT_RAILWAY_API_URL, DEFAULT_VERCEL_API_URL,
    NetlifyConfig, PollerConfig, RailwayConfig, RetryPolicy, VercelConfig,
};
pub use model::Provider;
pub use secrets::Keyring;

use crate::connections::Connections;
use crate::engine::DeployEngine;
use crate::projects::ProjectFiles;
use crate::providers::Providers;
use crate::service::DeployApi;
use crate::store::{ConnectionStore, DeploymentStore};

static MIGRATIONS: service_runtime::db::Migrations = service_runtime::migrations!();

/// Connects to the database, runs the migrations, starts the deployment poller and serves
/// deploy-service plus `grpc.health.v1` on `listener` until `shutdown` resolves; then stops the
/// poller and gives back its leases before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked first: a service never serves without a key to check its callers with.
    let verifier = CallerVerifier::required(config.caller_keys.as_ref(), audience::DEPLOY)?;
    let (db, connections) = open(&config).await?;
    metrics::init();
    tracing::info!(replica = %config.replica_id, "deploy database ready");

    let engine = Arc::new(DeployEngine::new(
        DeploymentStore::new(db),
        connections,
        Providers::new(&config).context("cannot build provider clients")?,
        ProjectFiles::new(&config.project_service_url).context("invalid PROJECT_SERVICE_URL")?,
        config.poller,
        config.replica_id.clone(),
    ));

    // One signal fans out to the gRPC server, the open event streams and the poller.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_signal = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = on_signal.send(true);
    });
    let poller = tokio::spawn(engine.clone().run_poller(stop_rx.clone()));
    // After a key rotation, move every token to the new key while serving (old rows open with
    // SECRETS_KEY_PREVIOUS meanwhile).
    let resealing = engine.clone();
    tokio::spawn(async move {
        match resealing.connections().reseal_all().await {
            Ok((0, 0)) => {}
            Ok((resealed, unreadable)) => {
                tracing::info!(resealed, unreadable, "provider tokens moved to SECRETS_KEY");
            }
            Err(e) => tracing::error!(error = %e, "cannot reseal provider tokens"),
        }
    });

    let server = DeployServiceServer::new(DeployApi::new(engine, stop_rx.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<DeployServiceServer<DeployApi>>()
        .await;
    let routes = tonic::service::Routes::new(health).add_service(server);
    let mut stopped = stop_rx;
    let served = service_runtime::grpc::serve(listener, routes, verifier, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
    .await
    .context("deploy-service gRPC server failed");
    // The server may also end by failing: the poller must stop either way.
    let _ = stop_tx.send(true);
    poller.await.context("deployment poller panicked")?;
    served
}

/// Reseals every saved provider token with `SECRETS_KEY` (those sealed with
/// `SECRETS_KEY_PREVIOUS` included) and returns how many were moved; `deploy-service
/// reencrypt-secrets` runs it once. A running deploy-service does the same at start.
pub async fn reencrypt_secrets(config: &Config) -> anyhow::Result<u64> {
    let (_, connections) = open(config).await?;
    let (resealed, unreadable) = connections.reseal_all().await?;
    if unreadable > 0 {
        anyhow::bail!(
            "{resealed} tokens resealed, but {unreadable} open with neither SECRETS_KEY nor \
             SECRETS_KEY_PREVIOUS (their owners must save them again)"
        );
    }
    Ok(resealed)
}

/// The migrated database and the connections sealed with the configured keys.
async fn open(config: &Config) -> anyhow::Result<(Database, Connections)> {
    let key = config.secrets_key.as_ref().context(
        "SECRETS_KEY is not set: 32 random bytes in base64 (openssl rand -base64 32), kept \
         secret and stable; it encrypts users' provider tokens",
    )?;
    let keyring = Keyring::new(key, config.secrets_key_previous.as_ref())
        .context("SECRETS_KEY or SECRETS_KEY_PREVIOUS is not a valid key")?;
    let db = Database::open(
        "deploy",
        &config.database_url,
        config.db_max_connections,
        &MIGRATIONS,
    )
    .await?;
    let providers = Providers::new(config).context("cannot build provider clients")?;
    let connections = Connections::new(ConnectionStore::new(db.clone()), keyring, providers);
    Ok((db, connections))
}
