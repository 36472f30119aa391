//! AutoCrea all-in-one: the gateway and every service in one process on loopback, the way the
//! quick start runs it. Each service is the same library the separate binaries use, started on its
//! own loopback port; SQLite files live under `DATA_DIR` (default `./data`).
//!
//! With no authentication configured it creates a development HS256 secret (kept in
//! `DATA_DIR/dev-secret` so tokens survive restarts) and prints a token to use with curl;
//! `autocrea token [--user ID] [--ttl-secs N]` prints another one. Without `SECRETS_KEY` it
//! generates the key that seals users' provider tokens and keeps it in `DATA_DIR/secrets-key`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;
use service_runtime::config::{listen_addr, optional};
use service_runtime::db::sqlite_url;
use service_runtime::identity::{SigningKey, VerifyingKeys};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

const DEV_USER: &str = gateway::dev_token::DEFAULT_USER;
const DEV_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Origins allowed to call the quick start from a browser when `CORS_ALLOWED_ORIGINS` is unset.
const LOCAL_FRONTEND_ORIGINS: [&str; 2] = ["http://localhost:3000", "http://127.0.0.1:3000"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data_dir = PathBuf::from(optional("DATA_DIR").unwrap_or_else(|| "data".into()));
    // `autocrea token [--user ID] [--ttl-secs N]`: a development token for this data directory.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("token") {
        let file = data_dir.join("dev-secret");
        println!("{}", gateway::dev_token::command(&args[1..], Some(&file))?);
        return Ok(());
    }
    // One process, one registry: the gateway's /metrics shows every service.
    let _telemetry = service_runtime::telemetry::init("autocrea")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create DATA_DIR {}", data_dir.display()))?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    };
    let mut tasks = JoinSet::new();

    // A key pair of this run: the gateway signs who each call is for, every service checks it,
    // so no other local user can call a service's loopback port as someone else. Nothing
    // outlives the process (a deployment's grant from before a restart is refused).
    let signing_key = SigningKey::generate();
    let caller_keys = VerifyingKeys::from(signing_key.verifying_key().clone());

    // Services first, each on a loopback port chosen by the OS.
    let mut project = project_service::Config::from_env()?;
    project.caller_keys = Some(caller_keys.clone());
    project.database_url = SecretString::from(sqlite_url(&data_dir, "project.db"));
    let project_url = spawn(&mut tasks, "project-service", |l| {
        project_service::run(project, l, stop())
    })
    .await?;

    let mut ai = ai_service::Config::from_env()?;
    ai.database_url = SecretString::from(sqlite_url(&data_dir, "ai.db"));
    ai.caller_keys = Some(caller_keys.clone());
    let ai_url = spawn(&mut tasks, "ai-service", |l| ai_service::run(ai, l, stop())).await?;

    let mut deploy = deploy_service::Config::from_env()?;
    deploy.database_url = SecretString::from(sqlite_url(&data_dir, "deploy.db"));
    if deploy.secrets_key.is_none() {
        // The quick start keeps its state under DATA_DIR: the key that seals users' provider
        // tokens lives beside deploy.db, so saved connections survive a restart.
        let path = data_dir.join("secrets-key");
        let key = match std::fs::read_to_string(&path) {
            Ok(key) if deploy_service::Keyring::new(&key.trim().into(), None).is_ok() => {
                key.trim().to_string()
            }
            _ => {
                let key =
                    secrecy::ExposeSecret::expose_secret(&deploy_service::Keyring::generate_key())
                        .to_string();
                write_private(&path, &key)?;
                tracing::info!(
                    file = %path.display(),
                    "SECRETS_KEY is not set: generated a key for users' provider tokens and kept \
                     it in this file (set SECRETS_KEY to choose your own)"
                );
                key
            }
        };
        deploy.secrets_key = Some(SecretString::from(key));
    }
    deploy.project_service_url = project_url.clone();
    deploy.caller_keys = Some(caller_keys.clone());
    let deploy_url = spawn(&mut tasks, "deploy-service", |l| {
        deploy_service::run(deploy, l, stop())
    })
    .await?;

    let mut sandbox = sandbox_service::Config::from_env()?;
    sandbox.caller_keys = Some(caller_keys);
    let sandbox_url = spawn(&mut tasks, "sandbox-service", |l| {
        sandbox_service::run(sandbox, l, stop())
    })
    .await?;

    // The gateway, on 127.0.0.1:8000 unless GATEWAY_LISTEN_ADDR says otherwise.
    let mut auth = gateway::config::AuthConfig::from_env()?;
    let mut dev_secret = None;
    if auth.jwks_url.is_none() && auth.hs256_secret.is_none() {
        let secret = dev_secret_in(&data_dir)?;
        auth.hs256_secret = Some(SecretString::from(secret.clone()));
        dev_secret = Some(secret);
    }
    let mut config = gateway::Config::from_env_with_auth(auth)?;
    config.database_url = SecretString::from(sqlite_url(&data_dir, "gateway.db"));
    config.signing_key = Some(signing_key);
    if std::env::var_os("CORS_ALLOWED_ORIGINS").is_none() {
        // A frontend in development (Next.js, Vite with --port 3000, ...) works at once.
        config.edge.allowed_origins = LOCAL_FRONTEND_ORIGINS.map(str::to_string).to_vec();
    }
    config.listen_addr = listen_addr("GATEWAY_LISTEN_ADDR", 8000).map(|a| {
        if optional("GATEWAY_LISTEN_ADDR").is_none() {
            loopback(a.port())
        } else {
            a
        }
    })?;
    let origins = config.edge.allowed_origins.join(", ");
    config.services.project = project_url;
    config.services.ai = ai_url;
    config.services.deploy = deploy_url;
    config.services.sandbox = sandbox_url;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (set GATEWAY_LISTEN_ADDR)",
                config.listen_addr
            )
        })?;
    let gateway_addr = listener.local_addr()?;
    let gateway_stop = stop();
    tasks.spawn(async move {
        (
            "gateway",
            gateway::run(config, listener, gateway_stop).await,
        )
    });

    println!();
    println!("AutoCrea is running at http://{gateway_addr}");
    println!("  API docs:   http://{gateway_addr}/docs");
    println!("  data:       {}", data_dir.display());
    if !origins.is_empty() {
        println!("  browsers:   {origins} may call it (CORS_ALLOWED_ORIGINS)");
    }
    if let Some(secret) = dev_secret {
        let token = gateway::auth::issue_dev_token(&secret, DEV_USER, DEV_TOKEN_TTL)?;
        println!("  dev token (user {DEV_USER}, 30 days):");
        println!();
        println!("export TOKEN={token}");
    }
    println!();

    tokio::select! {
        () = service_runtime::shutdown::signal() => {}
        Some(ended) = tasks.join_next() => {
            let (name, result) = ended.context("a service panicked")?;
            let _ = stop_tx.send(true);
            return match result {
                Ok(()) => Err(anyhow::anyhow!("{name} stopped unexpectedly")),
                Err(e) => Err(e.context(format!("{name} failed"))),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(ended) = tasks.join_next().await {
        if let Ok((name, Err(e))) = ended {
            tracing::warn!(
                service = name,
                error = format!("{e:#}"),
                "stopped with an error"
            );
        }
    }
    Ok(())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Binds a loopback port, starts `run` on it and returns the service's URL.
async fn spawn<F, Fut>(
    tasks: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
    name: &'static str,
    run: F,
) -> anyhow::Result<String>
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind(loopback(0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let future = run(listener);
    tasks.spawn(async move { (name, future.await) });
    Ok(url)
}

/// The development secret under `dir`, created on first start.
fn dev_secret_in(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("dev-secret");
    if let Ok(secret) = std::fs::read_to_string(&path) {
        let secret = secret.trim().to_string();
        if secret.len() >= gateway::config::MIN_HS256_SECRET_BYTES {
            return Ok(secret);
        }
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &secret)?;
    Ok(secret)
}

/// Writes `content` to `path`, readable by the owner alone.
fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    // Created readable by the owner alone from the first byte (no window in which another
    // local user could read it before a chmod).
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        // A file left by an older version may have wider permissions.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, content.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
