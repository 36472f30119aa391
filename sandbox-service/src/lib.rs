//! sandbox-service: runs untrusted code in hardened, single-use Docker containers and hands back
//! what it printed, over gRPC (`autocrea.sandbox.v1.SandboxService`).
//!
//! Every run gets a fresh container (from a warm pool of started idle ones, or created on the
//! spot) with a read-only root filesystem, size-capped tmpfs work directory, no network, no
//! capabilities, a non-root user, memory/CPU/pids/ulimit limits, an output cap and a wall-clock
//! limit; the container is removed after the run whatever happened. A container's main process is
//! the image's supervisor (`deploy/sandbox/supervisor.py`), which starts the language's
//! interpreter before any run arrives; the code, arguments and stdin travel on the container's
//! stdin as length-prefixed data (see [`protocol`]), so no request field is ever parsed by a
//! shell.

pub mod config;
pub mod engine;
pub mod engine_endpoint;
pub mod error;
pub mod language;
pub mod metrics;
pub mod output;
pub mod pool;
pub mod protocol;
pub mod request;
pub mod runner;
pub mod sandbox;
pub mod service;

use service_runtime::identity::{CallerVerifier, audience};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use autocrea_proto::sandbox::v1::sandbox_service_server::SandboxServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Config, Limits, RequestLimits};
pub use error::{Error, Result};

use sandbox::Sandbox;
use service::SandboxApi;

/// How long the first engine check may delay start-up.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of engine checks while the engine is unavailable, and while it is available.
const PROBE_INTERVAL_DOWN: Duration = Duration::from_secs(5);
const PROBE_INTERVAL_UP: Duration = Duration::from_secs(30);

/// Serves sandbox-service on `listener` until `shutdown` resolves, then waits for running runs
/// and removes every container of this instance.
///
/// Without a Docker engine (or without the runtime image) the service still starts: health
/// reports `NOT_SERVING` for `autocrea.sandbox.v1.SandboxService`, Execute answers
/// `UNAVAILABLE` with the reason, and the engine is checked again every few seconds.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Checked first: a service never serves without a key to check its callers with.
    let verifier = CallerVerifier::required(config.caller_keys.as_ref(), audience::SANDBOX)?;
    let config = Arc::new(config);
    let sandbox = Sandbox::new((*config).clone());
    metrics::init(&sandbox);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<SandboxServiceServer<SandboxApi>>()
        .await;

    let first = tokio::time::timeout(FIRST_PROBE_TIMEOUT, sandbox.probe())
        .await
        .unwrap_or_else(|_| Err("the Docker engine did not answer in time".to_string()));
    report(&reporter, &first).await;

    let stop_probing = CancellationToken::new();
    let prober = tokio::spawn({
        let sandbox = sandbox.clone();
        let stop = stop_probing.clone();
        let mut last = first;
        async move {
            loop {
                let wait = if last.is_ok() {
                    PROBE_INTERVAL_UP
                } else {
                    PROBE_INTERVAL_DOWN
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                let now = sandbox.probe().await;
                if now.is_ok() != last.is_ok() {
                    report(&reporter, &now).await;
                }
                last = now;
            }
        }
    });

    let api = SandboxApi {
        sandbox: sandbox.clone(),
        config,
    };
    let routes = tonic::service::Routes::new(health).add_service(
        SandboxServiceServer::new(api)
            .max_decoding_message_size(service_runtime::grpc::MAX_MESSAGE_SIZE)
            .max_encoding_message_size(service_runtime::grpc::MAX_MESSAGE_SIZE),
    );
    let served = service_runtime::grpc::serve(listener, routes, verifier, shutdown).await;
    stop_probing.cancel();
    let _ = prober.await;
    sandbox.shutdown().await;
    served?;
    Ok(())
}

async fn report(reporter: &tonic_health::server::HealthReporter, state: &Result<(), String>) {
    match state {
        Ok(()) => {
            tracing::info!("sandbox ready: Docker engine and runtime image available");
            reporter
                .set_serving::<SandboxServiceServer<SandboxApi>>()
                .await;
        }
        Err(reason) => {
            tracing::warn!(reason = %reason, "sandbox not ready");
            reporter
                .set_not_serving::<SandboxServiceServer<SandboxApi>>()
                .await;
        }
    }
}
