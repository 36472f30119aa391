//! deploy-service: ships a project's files to Vercel, Netlify or Railway over their HTTP APIs and
//! follows each deployment to a final state, over gRPC (`autocrea.deploy.v1.DeployService`),
//! with its state machine and event log in SQLite or PostgreSQL.
//!
//! The public surface is [`Config`] and [`run`]; `main.rs` and the all-in-one binary use both,
//! and the integration tests start the real server through [`run`] on port 0.

mod config;
mod engine;
mod error;
mod metrics;
mod model;
mod projects;
mod providers;
mod service;
mod store;

use service_runtime::identity::{CallerVerifier, audience};
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use autocrea_proto::deploy::v1::deploy_service_server::DeployServiceServer;
use service_runtime::db::Database;
use service_runtime::grpc::MAX_MESSAGE_SIZE;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{
    Config, DEFAULT_NETLIFY_API_URL, DEFAULT_RAILWAY_API_URL, DEFAULT_VERCEL_API_URL,
    NetlifyConfig, PollerConfig, RailwayConfig, RetryPolicy, VercelConfig,
};

use crate::engine::DeployEngine;
use crate::projects::ProjectFiles;
use crate::providers::Providers;
use crate::service::DeployApi;
use crate::store::DeploymentStore;

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
    let db = Database::open(
        "deploy",
        &config.database_url,
        config.db_max_connections,
        &MIGRATIONS,
    )
    .await?;
    metrics::init();

    let engine = Arc::new(DeployEngine::new(
        DeploymentStore::new(db),
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
