//! project-service: a user's projects and the files in them, over gRPC
//! (`autocrea.project.v1.ProjectService`), stored in SQLite or PostgreSQL.
//!
//! The public surface is [`Config`] and [`run`]; `main.rs` and the all-in-one binary use both,
//! and the integration tests start the real server through [`run`] on port 0.

mod config;
mod error;
mod service;
mod store;
mod validated;

use service_runtime::identity::{CallerVerifier, audience};
use std::future::Future;

use anyhow::Context;
use autocrea_proto::project::v1::project_service_server::ProjectServiceServer;
use service_runtime::db::Database;
use service_runtime::grpc::MAX_MESSAGE_SIZE;
use tokio::net::TcpListener;

pub use config::{
    Config, DEFAULT_DB_MAX_CONNECTIONS, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILES,
    DEFAULT_MAX_PROJECT_BYTES, DEFAULT_MAX_PROJECTS_PER_USER, DEFAULT_MAX_USER_BYTES,
};

use crate::service::ProjectApi;
use crate::store::{ProjectQuota, ProjectStore, UserQuota};

static MIGRATIONS: service_runtime::db::Migrations = service_runtime::migrations!();

/// Connects to the database, runs the migrations, and serves project-service plus
/// `grpc.health.v1` on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked first: a service never serves without a key to check its callers with.
    let verifier = CallerVerifier::required(config.caller_keys.as_ref(), audience::PROJECT)?;
    let db = Database::open(
        "project",
        &config.database_url,
        config.db_max_connections,
        &MIGRATIONS,
    )
    .await?;

    let api = ProjectApi::new(
        ProjectStore::new(db),
        ProjectQuota {
            max_files: config.max_files,
            max_bytes: config.max_project_bytes,
        },
        UserQuota {
            max_projects: config.max_projects_per_user,
            max_bytes: config.max_user_bytes,
        },
        config.max_file_bytes,
    );
    let server = ProjectServiceServer::new(api)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<ProjectServiceServer<ProjectApi>>()
        .await;
    let routes = tonic::service::Routes::new(health).add_service(server);
    service_runtime::grpc::serve(listener, routes, verifier, shutdown)
        .await
        .context("project-service gRPC server failed")?;
    Ok(())
}
