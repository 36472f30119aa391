//! sandbox-service: placeholder that starts, serves `grpc.health.v1` and answers its RPCs with
//! `UNIMPLEMENTED`, so that the gateway, readiness and the all-in-one mode see it from day one.

use std::future::Future;
use std::net::SocketAddr;

use autocrea_proto::sandbox::v1::sandbox_service_server::{SandboxService, SandboxServiceServer};
use autocrea_proto::sandbox::v1::{PingRequest, PingResponse};
use service_runtime::config::{ConfigError, listen_addr};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Configuration of sandbox-service, read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`SANDBOX_LISTEN_ADDR`, default `0.0.0.0:50054`).
    pub listen_addr: SocketAddr,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: listen_addr("SANDBOX_LISTEN_ADDR", 50054)?,
        })
    }
}

#[derive(Debug, Default)]
struct Placeholder;

#[tonic::async_trait]
impl SandboxService for Placeholder {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Err(Status::unimplemented(
            "sandbox-service is not implemented yet",
        ))
    }
}

/// Serves sandbox-service on `listener` until `shutdown` resolves.
pub async fn run(
    _config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<SandboxServiceServer<Placeholder>>()
        .await;
    let routes =
        tonic::service::Routes::new(health).add_service(SandboxServiceServer::new(Placeholder));
    service_runtime::grpc::serve(listener, routes, shutdown).await?;
    Ok(())
}
