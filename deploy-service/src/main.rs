//! deploy-service binary: telemetry, metrics port, config, bind, serve until a shutdown signal.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("deploy-service")?;
    service_runtime::metrics::start_from_env(9102).await?;
    let config = deploy_service::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "deploy-service listening");
    deploy_service::run(config, listener, service_runtime::shutdown::signal()).await
}
