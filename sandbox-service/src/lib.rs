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
pub mod error;
pub mod language;
pub mod metrics;
pub mod output;
pub mod pool;
pub mod protocol;
pub mod request;
pub mod runner;
pub mod sandbox;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use autocrea_proto::sandbox::v1::sandbox_service_server::{SandboxService, SandboxServiceServer};
use autocrea_proto::sandbox::v1::{
    ExecuteEvent, ExecuteRequest, ExecuteResponse, ListLanguagesRequest, ListLanguagesResponse,
    execute_event,
};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use config::{Config, Limits, RequestLimits};
pub use error::{Error, Result};

use request::RunSpec;
use sandbox::{RunEvent, Sandbox};

/// How long the first engine check may delay start-up.
const FIRST_PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of engine checks while the engine is unavailable, and while it is available.
const PROBE_INTERVAL_DOWN: Duration = Duration::from_secs(5);
const PROBE_INTERVAL_UP: Duration = Duration::from_secs(30);

/// The gRPC face of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxApi {
    sandbox: Arc<Sandbox>,
    config: Arc<Config>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ExecuteEvent, Status>> + Send>>;

#[tonic::async_trait]
impl SandboxService for SandboxApi {
    async fn execute(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<ExecuteResponse>, Status> {
        service_runtime::grpc::caller(&request)?;
        let spec = RunSpec::parse(request.into_inner(), &self.config)?;
        let mut events = self.sandbox.start(spec, false)?;
        while let Some(event) = events.recv().await {
            match event {
                RunEvent::Done(response) => return Ok(Response::new(response)),
                RunEvent::Failed(e) => return Err(e.into()),
                RunEvent::Stdout(_) | RunEvent::Stderr(_) => {}
            }
        }
        Err(service_runtime::grpc::internal(anyhow::anyhow!(
            "run ended without a result"
        )))
    }

    type ExecuteStreamStream = EventStream;

    async fn execute_stream(
        &self,
        request: Request<ExecuteRequest>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        service_runtime::grpc::caller(&request)?;
        let spec = RunSpec::parse(request.into_inner(), &self.config)?;
        let events = self.sandbox.start(spec, true)?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
            let event = match event {
                RunEvent::Stdout(text) => execute_event::Event::Stdout(text),
                RunEvent::Stderr(text) => execute_event::Event::Stderr(text),
                RunEvent::Done(response) => execute_event::Event::Result(response),
                RunEvent::Failed(e) => return Err(Status::from(e)),
            };
            Ok(ExecuteEvent { event: Some(event) })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_languages(
        &self,
        request: Request<ListLanguagesRequest>,
    ) -> Result<Response<ListLanguagesResponse>, Status> {
        service_runtime::grpc::caller(&request)?;
        Ok(Response::new(ListLanguagesResponse {
            languages: self.sandbox.languages(),
        }))
    }
}

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
    let served = service_runtime::grpc::serve(listener, routes, shutdown).await;
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
