//! The AutoCrea gateway: the only public entry. It authenticates callers, applies rate limits per
//! route group, validates input, and routes each request over gRPC to the service that owns it.
//! Errors are RFC 9457 problem+json with the request id.

use std::future::Future;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};

pub mod auth;
pub mod client_ip;
pub mod config;
pub mod cors;
pub mod dev_token;
pub mod downstream;
pub mod guard;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod problem;
pub mod request_context;
pub mod request_id;
pub mod routes;
pub mod security_headers;
pub mod sse;
pub mod state;
pub mod timestamp;

pub use config::Config;
use state::AppState;

/// Serves the gateway on `listener` until `shutdown` resolves, then drains in-flight requests.
/// With `GATEWAY_METRICS_ADDR` set (`config.edge.ops_addr`), `/metrics` and `/ready` are served
/// on that address instead (see [`run_with`]).
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ops =
        match config.edge.ops_addr {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!("cannot listen on GATEWAY_METRICS_ADDR {addr}: {e}")
            })?),
            None => None,
        };
    run_with(config, listener, ops, shutdown).await
}

/// Serves the API on `listener` and, when `ops` is given, `/metrics` and `/ready` on `ops`
/// only (so that they need not be reachable from the internet), until `shutdown` resolves.
pub async fn run_with(
    config: Config,
    listener: tokio::net::TcpListener,
    ops: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.auth.validate()?;
    if config.auth.hs256_secret.is_some() {
        tracing::warn!(
            beside_jwks = config.auth.jwks_url.is_some(),
            "HS256 development tokens are accepted (AUTH_HS256_SECRET); production uses \
             AUTH_JWKS_URL alone"
        );
    }
    metrics::init(&limits::RouteGroup::ALL.map(limits::RouteGroup::name));
    let state = web::Data::new(AppState::new(config.clone()).await?);
    if state.limiter.is_shared() {
        tracing::info!("rate limits shared through Redis");
    } else {
        tracing::info!(
            "rate limits kept in process (set REDIS_URL to share them between replicas)"
        );
    }
    if config.edge.allowed_origins.is_empty() {
        tracing::info!("no cross-origin access (set CORS_ALLOWED_ORIGINS for a web frontend)");
    } else {
        tracing::info!(origins = ?config.edge.allowed_origins, "cross-origin access allowed");
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
    let ops_apart = ops.is_some();
    let app_state = state.clone();
    let listener = listener.into_std()?;
    let server = HttpServer::new(move || {
        let edge = &app_state.config.edge;
        // The last `wrap` is the outermost: security headers on every answer, then the request
        // id and log, the header budget, and CORS (so preflights never reach auth or limits).
        App::new()
            .app_data(app_state.clone())
            .configure(|cfg| routes::configure(cfg, max_body, !ops_apart))
            .wrap(cors::middleware(edge))
            .wrap(from_fn(cors::preflight_answers))
            .wrap(from_fn(security_headers::header_budget))
            .wrap(from_fn(request_id::middleware))
            .wrap(from_fn(security_headers::middleware))
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

    let ops_server = match ops {
        Some(ops) => {
            let addr = ops.local_addr()?;
            let ops_state = state.clone();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(ops_state.clone())
                    .configure(routes::configure_ops)
                    .wrap(from_fn(request_id::middleware))
                    .wrap(from_fn(security_headers::middleware))
            })
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(ops.into_std()?)?
            .run();
            tracing::info!(%addr, "/metrics and /ready served apart from the API");
            Some(server)
        }
        None => None,
    };
    let ops_handle = ops_server.as_ref().map(actix_web::dev::Server::handle);
    let ops_task = ops_server.map(tokio::spawn);

    tokio::spawn(async move {
        shutdown.await;
        if let Some(ops) = ops_handle {
            ops.stop(true).await;
        }
        handle.stop(true).await;
    });
    let result = server.await;
    sweeper.abort();
    if let Some(task) = ops_task {
        task.abort();
    }
    result?;
    Ok(())
}
