//! project-service: placeholder serving only `grpc.health.v1` until the spine issue fills it in.

use std::future::Future;
use std::net::SocketAddr;

use service_runtime::config::{ConfigError, listen_addr};
use tokio::net::TcpListener;

/// Configuration of project-service, read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`PROJECT_LISTEN_ADDR`, default `0.0.0.0:50053`).
    pub listen_addr: SocketAddr,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: listen_addr("PROJECT_LISTEN_ADDR", 50053)?,
        })
    }
}

/// Serves project-service on `listener` until `shutdown` resolves.
pub async fn run(
    _config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let routes = tonic::service::Routes::new(health);
    service_runtime::grpc::serve(listener, routes, shutdown).await?;
    Ok(())
}
