//! The AutoCrea gateway: the only public entry. It authenticates callers, applies rate limits per
//! route group, validates input, and routes each request over gRPC to the service that owns it.
//! Errors are RFC 9457 problem+json with the request id.

use std::future::Future;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

pub mod auth;
pub mod config;
pub mod downstream;
pub mod guard;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod request_id;
pub mod routes;
pub mod sse;
pub mod state;

pub use config::Config;
use state::AppState;

/// Serves the gateway on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.auth.validate()?;
    metrics::init();
    let state = web::Data::new(AppState::new(config.clone()).await?);
    if state.limiter.is_shared() {
        tracing::info!("rate limits shared through Redis");
    } else {
        tracing::info!(
            "rate limits kept in process (set REDIS_URL to share them between replicas)"
        );
    }

    let sweeper_state = state.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweeper_state.limiter.forget_idle();
        }
    });

    let max_body = config.max_body_bytes;
    let listener = listener.into_std()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(|cfg| routes::configure(cfg, max_body))
            .wrap(from_fn(request_id::middleware))
    })
    .workers(config.workers.max(1))
    // A client that closes its side has gone away: end the response, which drops a streaming
    // body and so cancels the gRPC stream (and the AI provider call) behind it.
    .h1_allow_half_closed(false)
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();

    let handle = server.handle();
    tokio::spawn(async move {
        shutdown.await;
        handle.stop(true).await;
    });
    let result = server.await;
    sweeper.abort();
    result?;
    Ok(())
}
