//! gateway binary: read config, start telemetry, bind, serve until a shutdown signal.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("gateway")?;
    let config = gateway::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    gateway::run(config, listener, service_runtime::shutdown::signal()).await
}
