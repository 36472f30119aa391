//! gRPC clients of the services behind the gateway, and their readiness.

use std::time::Duration;

use autocrea_proto::ai::v1::ai_service_client::AiServiceClient;
use autocrea_proto::deploy::v1::deploy_service_client::DeployServiceClient;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use autocrea_proto::sandbox::v1::sandbox_service_client::SandboxServiceClient;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, REQUEST_ID, USER_ID};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::auth::Caller;
use crate::config::ServiceUrls;

/// Clients of every downstream service. Channels connect lazily and reconnect by themselves.
#[derive(Debug, Clone)]
pub struct Downstreams {
    /// project-service.
    pub project: ProjectServiceClient<Channel>,
    /// ai-service.
    pub ai: AiServiceClient<Channel>,
    /// deploy-service.
    pub deploy: DeployServiceClient<Channel>,
    /// sandbox-service.
    pub sandbox: SandboxServiceClient<Channel>,
    health: Vec<(&'static str, HealthClient<Channel>)>,
}

/// How one downstream answered its health check.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    /// The service.
    pub name: &'static str,
    /// Whether it answered SERVING.
    pub ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Downstreams {
    /// Clients for `urls`; nothing connects until the first call.
    pub fn new(urls: &ServiceUrls, options: ClientOptions) -> anyhow::Result<Self> {
        let connect = |name: &str, url: &str| {
            service_runtime::grpc::channel(url, options)
                .map_err(|e| anyhow::anyhow!("invalid URL for {name} ({url}): {e}"))
        };
        let project = connect("project-service", &urls.project)?;
        let ai = connect("ai-service", &urls.ai)?;
        let deploy = connect("deploy-service", &urls.deploy)?;
        let sandbox = connect("sandbox-service", &urls.sandbox)?;
        let health = vec![
            ("project-service", HealthClient::new(project.clone())),
            ("ai-service", HealthClient::new(ai.clone())),
            ("deploy-service", HealthClient::new(deploy.clone())),
            ("sandbox-service", HealthClient::new(sandbox.clone())),
        ];
        Ok(Self {
            project: ProjectServiceClient::new(project)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            ai: AiServiceClient::new(ai)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            deploy: DeployServiceClient::new(deploy)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            sandbox: SandboxServiceClient::new(sandbox)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            health,
        })
    }

    /// Asks every service's `grpc.health.v1` at once, each bounded by `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Vec<ServiceHealth> {
        let checks = self.health.iter().map(|(name, client)| {
            let mut client = client.clone();
            async move {
                let request = tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                });
                let outcome = tokio::time::timeout(timeout, client.check(request)).await;
                let reason = match outcome {
                    Err(_) => Some(format!("no answer within {} ms", timeout.as_millis())),
                    Ok(Err(status)) => Some(format!("unreachable ({})", status.code())),
                    Ok(Ok(response)) => match response.into_inner().status() {
                        ServingStatus::Serving => None,
                        other => Some(format!("reports {}", other.as_str_name())),
                    },
                };
                ServiceHealth {
                    name,
                    ready: reason.is_none(),
                    reason,
                }
            }
        });
        futures::future::join_all(checks).await
    }
}

/// A gRPC request carrying the caller's identity and the request id.
pub fn request<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    if let Ok(value) = MetadataValue::try_from(caller.user_id.as_str()) {
        metadata.insert(USER_ID, value);
    }
    if let Some(id) = crate::request_id::current()
        && let Ok(value) = MetadataValue::try_from(id.as_str())
    {
        metadata.insert(REQUEST_ID, value);
    }
    request
}
