//! gateway binary: read config, start telemetry, bind, serve until a shutdown signal.
//! `gateway token [--user ID] [--ttl-secs N]` prints a development token instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("token") {
        println!("{}", gateway::dev_token::command(&args[1..], None)?);
        return Ok(());
    }
    let _telemetry = service_runtime::telemetry::init("gateway")?;
    let config = gateway::Config::from_env()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    gateway::run(config, listener, service_runtime::shutdown::signal()).await
}
