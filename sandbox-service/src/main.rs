//! sandbox-service binary: telemetry, metrics port, config, bind, serve until a shutdown signal.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("sandbox-service")?;
    service_runtime::metrics::start_from_env(9104).await?;
    let config = sandbox_service::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "sandbox-service listening");
    sandbox_service::run(config, listener, service_runtime::shutdown::signal()).await
}
