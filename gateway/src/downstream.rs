//! gRPC clients of the services behind the gateway, and their readiness.

use std::time::Duration;

use autocrea_proto::ai::v1::ai_service_client::AiServiceClient;
use autocrea_proto::deploy::v1::deploy_service_client::DeployServiceClient;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use autocrea_proto::sandbox::v1::sandbox_service_client::SandboxServiceClient;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, REQUEST_ID};
use service_runtime::grpc_observe::TracedChannel;
use service_runtime::identity::{AssertionSigner, OnBehalfOf, SignedChannel, audience};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::ServiceUrls;
use crate::identity::{AuthMethod, Caller};

/// Least time an AI call may take: ai-service's own whole-call limit (300 s) plus margin.
const AI_CALL_FLOOR: Duration = Duration::from_secs(330);
/// How long a deployment's grant to read its project's files lives: the upload happens in the
/// deployment's first step, normally within seconds, and is retried with back-off while
/// project-service or the provider is down; past this the deployment fails and is asked again.
pub const FILES_GRANT_LIFETIME: Duration = Duration::from_secs(3600);
/// Least time a sandbox run may take: its largest wall-clock limit (60 s) plus container start.
const SANDBOX_CALL_FLOOR: Duration = Duration::from_secs(130);

/// Clients of every downstream service. Channels connect lazily and reconnect by themselves.
/// Every call gets a `grpc.client` span (a child of the request's span) whose trace context
/// goes to the service in the metadata, and an assertion of its caller addressed to that service
/// ([`request`] says who the caller is; the channel signs).
#[derive(Debug, Clone)]
pub struct Downstreams {
    /// project-service.
    pub project: ProjectServiceClient<SignedChannel>,
    /// ai-service.
    pub ai: AiServiceClient<SignedChannel>,
    /// deploy-service.
    pub deploy: DeployServiceClient<SignedChannel>,
    /// sandbox-service.
    pub sandbox: SandboxServiceClient<SignedChannel>,
    health: Vec<HealthCheck>,
}

/// How one downstream answered its health check.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ServiceHealth {
    /// The service.
    pub name: &'static str,
    /// Whether it answered SERVING.
    pub ready: bool,
    /// `ready`; `degraded` (it answers but reports that it cannot do its work, e.g. sandbox-service
    /// without a Docker engine or runtime image: its routes answer 503 with the reason, the rest
    /// of the platform works); or `unavailable` (no answer).
    pub state: ServiceState,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a downstream's health check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// SERVING.
    Ready,
    /// Answers, but reports NOT_SERVING for its API.
    Degraded,
    /// Does not answer.
    Unavailable,
}

/// Each downstream: its name, the gRPC service whose health it reports, and its health client.
type HealthCheck = (&'static str, &'static str, HealthClient<Channel>);

impl Downstreams {
    /// Clients for `urls`; nothing connects until the first call.
    pub fn new(
        urls: &ServiceUrls,
        options: ClientOptions,
        signer: AssertionSigner,
    ) -> anyhow::Result<Self> {
        let connect_with = |name: &str, url: &str, options: ClientOptions| {
            service_runtime::grpc::channel(url, options)
                .map_err(|e| anyhow::anyhow!("invalid URL for {name} ({url}): {e}"))
        };
        let connect = |name: &str, url: &str| connect_with(name, url, options);
        // Some unary calls legitimately take long: an AI answer may wait on the provider for
        // minutes (ai-service bounds it itself), a sandbox run up to its wall-clock limit plus
        // container start. Their channels get at least that much, so the gateway never cuts off a
        // call the service would still answer.
        let at_least = |floor: Duration| ClientOptions {
            request_timeout: options.request_timeout.max(floor),
            ..options
        };
        let project = connect("project-service", &urls.project)?;
        let ai = connect_with("ai-service", &urls.ai, at_least(AI_CALL_FLOOR))?;
        let deploy = connect("deploy-service", &urls.deploy)?;
        let sandbox = connect_with(
            "sandbox-service",
            &urls.sandbox,
            at_least(SANDBOX_CALL_FLOOR),
        )?;
        let health = vec![
            (
                "project-service",
                "autocrea.project.v1.ProjectService",
                HealthClient::new(project.clone()),
            ),
            (
                "ai-service",
                "autocrea.ai.v1.AiService",
                HealthClient::new(ai.clone()),
            ),
            (
                "deploy-service",
                "autocrea.deploy.v1.DeployService",
                HealthClient::new(deploy.clone()),
            ),
            (
                "sandbox-service",
                "autocrea.sandbox.v1.SandboxService",
                HealthClient::new(sandbox.clone()),
            ),
        ];
        let signed = |channel: Channel, service: &'static str| {
            SignedChannel::new(
                TracedChannel::new(channel, service),
                signer.clone(),
                service,
            )
        };
        Ok(Self {
            project: ProjectServiceClient::new(signed(project, audience::PROJECT))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            ai: AiServiceClient::new(signed(ai, audience::AI))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            deploy: DeployServiceClient::new(signed(deploy, audience::DEPLOY))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            sandbox: SandboxServiceClient::new(signed(sandbox, audience::SANDBOX))
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            health,
        })
    }

    /// Asks every service's `grpc.health.v1` about its API at once, each bounded by `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Vec<ServiceHealth> {
        let checks = self.health.iter().map(|(name, service, client)| {
            let mut client = client.clone();
            async move {
                let request = tonic::Request::new(HealthCheckRequest {
                    service: (*service).to_string(),
                });
                let outcome = tokio::time::timeout(timeout, client.check(request)).await;
                let (state, reason) = match outcome {
                    Err(_) => (
                        ServiceState::Unavailable,
                        Some(format!("no answer within {} ms", timeout.as_millis())),
                    ),
                    Ok(Err(status)) => (
                        ServiceState::Unavailable,
                        Some(format!("unreachable ({})", status.code())),
                    ),
                    Ok(Ok(response)) => match response.into_inner().status() {
                        ServingStatus::Serving => (ServiceState::Ready, None),
                        other => (
                            ServiceState::Degraded,
                            Some(format!(
                                "answers but reports {}: {}",
                                other.as_str_name(),
                                degraded_hint(name)
                            )),
                        ),
                    },
                };
                ServiceHealth {
                    name,
                    ready: state == ServiceState::Ready,
                    state,
                    reason,
                }
            }
        });
        futures::future::join_all(checks).await
    }
}

/// What a service that answers but reports NOT_SERVING cannot do, for operators.
fn degraded_hint(name: &str) -> &'static str {
    match name {
        "sandbox-service" => {
            "its Docker engine or runtime image is unavailable, so code cannot run (its log and \
             the 503 of /api/sandbox/execute say which; deploy/sandbox/build-images.sh builds the \
             image)"
        }
        _ => "its API is switched off; its log says why",
    }
}

/// A gRPC request made for `caller`: its channel signs an assertion of who the caller is,
/// addressed to the service called. The request id travels in the metadata too. (The channel also
/// adds the W3C trace context of the call's client span.)
pub fn request<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let request_id = crate::request_context::current();
    let (auth_method, scopes) = match &caller.method {
        AuthMethod::Jwt => ("jwt", crate::identity::Scopes::full().names()),
        AuthMethod::ApiKey { scopes, .. } => ("api_key", scopes.names()),
    };
    let mut request = tonic::Request::new(message);
    if let Some(id) = &request_id
        && let Ok(value) = MetadataValue::try_from(id.as_str())
    {
        request.metadata_mut().insert(REQUEST_ID, value);
    }
    request.extensions_mut().insert(OnBehalfOf {
        user_id: caller.user_id.clone(),
        auth_method: auth_method.to_string(),
        scopes,
        request_id,
        ..OnBehalfOf::default()
    });
    request
}

/// A request whose target reads the caller's project on their behalf while the call lasts: its
/// assertion is also addressed to project-service, to which the target forwards it.
pub fn request_via_project<T>(caller: &Caller, message: T) -> tonic::Request<T> {
    let mut request = request(caller, message);
    if let Some(who) = request.extensions_mut().get_mut::<OnBehalfOf>() {
        who.also_for.push(audience::PROJECT);
    }
    request
}

/// A request whose target reads `project` and its files on the caller's behalf, now and later
/// (a deployment's upload): [`request_via_project`], plus a grant to read exactly that project
/// for [`FILES_GRANT_LIFETIME`].
pub fn request_reading_project<T>(caller: &Caller, project: &str, message: T) -> tonic::Request<T> {
    let mut request = request_via_project(caller, message);
    if let Some(who) = request.extensions_mut().get_mut::<OnBehalfOf>() {
        who.files_grant = Some((project.to_string(), FILES_GRANT_LIFETIME));
    }
    request
}
