//! project-service binary: telemetry, metrics port, config, bind, serve until a shutdown signal.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("project-service")?;
    service_runtime::metrics::start_from_env(9103).await?;
    let config = project_service::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "project-service listening");
    project_service::run(config, listener, service_runtime::shutdown::signal()).await
}
