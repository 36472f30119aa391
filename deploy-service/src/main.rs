//! deploy-service binary: telemetry, metrics port, config, bind, serve until a shutdown signal.
//! `deploy-service reencrypt-secrets` reseals every saved provider token with `SECRETS_KEY` (after
//! a rotation, with the old key as `SECRETS_KEY_PREVIOUS`) and exits.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = service_runtime::telemetry::init("deploy-service")?;
    let config = deploy_service::Config::from_env()?;
    if std::env::args().nth(1).as_deref() == Some("reencrypt-secrets") {
        let resealed = deploy_service::reencrypt_secrets(&config).await?;
        println!("{resealed} provider tokens resealed with SECRETS_KEY");
        return Ok(());
    }
    service_runtime::metrics::start_from_env(9102).await?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "deploy-service listening");
    deploy_service::run(config, listener, service_runtime::shutdown::signal()).await
}
