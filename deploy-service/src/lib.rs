//! deploy-service: placeholder that starts, serves `grpc.health.v1` and answers its RPCs with
//! `UNIMPLEMENTED`, so that the gateway, readiness and the all-in-one mode see it from day one.

use std::future::Future;
use std::net::SocketAddr;

use autocrea_proto::deploy::v1::deploy_service_server::{DeployService, DeployServiceServer};
use autocrea_proto::deploy::v1::{PingRequest, PingResponse};
use service_runtime::config::{ConfigError, listen_addr};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// Configuration of deploy-service, read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`DEPLOY_LISTEN_ADDR`, default `0.0.0.0:50052`).
    pub listen_addr: SocketAddr,
}

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            listen_addr: listen_addr("DEPLOY_LISTEN_ADDR", 50052)?,
        })
    }
}

#[derive(Debug, Default)]
struct Placeholder;

#[tonic::async_trait]
impl DeployService for Placeholder {
    async fn ping(&self, _: Request<PingRequest>) -> Result<Response<PingResponse>, Status> {
        Err(Status::unimplemented(
            "deploy-service is not implemented yet",
        ))
    }
}

/// Serves deploy-service on `listener` until `shutdown` resolves.
pub async fn run(
    _config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<DeployServiceServer<Placeholder>>()
        .await;
    let routes =
        tonic::service::Routes::new(health).add_service(DeployServiceServer::new(Placeholder));
    service_runtime::grpc::serve(listener, routes, shutdown).await?;
    Ok(())
}
