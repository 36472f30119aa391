//! The gRPC face of the sandbox (`autocrea.sandbox.v1.SandboxService`): reads the caller,
//! validates the request into a run, and maps the run's events to the protocol.

use std::pin::Pin;
use std::sync::Arc;

use autocrea_proto::sandbox::v1::sandbox_service_server::SandboxService;
use autocrea_proto::sandbox::v1::{
    ExecuteEvent, ExecuteRequest, ExecuteResponse, ListLanguagesRequest, ListLanguagesResponse,
    execute_event,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::request::RunSpec;
use crate::sandbox::{RunEvent, Sandbox};

/// The gRPC face of the sandbox.
#[derive(Debug, Clone)]
pub struct SandboxApi {
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) config: Arc<Config>,
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
