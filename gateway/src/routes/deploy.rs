//! `/api/deploy` and `/api/deployments`: ship a project to Vercel, Netlify or Railway through
//! deploy-service, follow the deployment (JSON or an SSE stream of its events), cancel it, roll
//! back. Only the owner of a deployment sees or acts on it; to anyone else it does not exist.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use autocrea_proto::deploy::v1 as pb;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::downstream::{request, request_reading_project};
use crate::identity::Caller;
use crate::problem::{Answered, ApiError, ApiResult, FieldError};
use crate::routes::{schema, timestamp};
use crate::sse;
use crate::state::AppState;

const SERVICE: &str = "deploy-service";
/// Header that makes `POST /api/deploy` safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_deployment,
        list_deployments,
        get_deployment,
        deployment_events,
        cancel_deployment,
        rollback_deployment
    ),
    components(schemas(
        Deployment,
        CreateDeployment,
        DeploymentPage,
        DeploymentEvent,
        schema::DeploymentId
    )),
    tags((name = "deployments", description = "Ship projects to Vercel, Netlify or Railway and follow them"))
)]
pub struct DeployApi;

/// A deployment of a project to a hosting provider.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Deployment id (UUID v7).
    pub id: String,
    /// The project shipped.
    pub project_id: String,
    /// `vercel`, `netlify` or `railway`.
    pub provider: String,
    /// `production` or `preview`.
    pub target: String,
    /// `queued`, `uploading`, `building`, then one of the final states `ready`, `error`,
    /// `canceled`.
    pub state: String,
    /// Public URL once the provider reports one.
    pub url: Option<String>,
    /// The provider's id of the deployment, once the provider accepted it.
    pub provider_deployment_id: Option<String>,
    /// Why the deployment failed (state `error` only).
    pub error: Option<String>,
    /// For a rollback: the deployment it made live again.
    pub rollback_of: Option<String>,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// RFC 3339 time a final state was reached.
    pub finished_at: Option<String>,
    /// The provider's own last reported state (Vercel `BLOCKED`, Railway `NEEDS_APPROVAL`,
    /// `WAITING`, `SLEEPING`, …), once it reported one.
    pub provider_state: Option<String>,
    /// Whose account it went to: `user` (your connection) or `platform` (the operator's).
    pub account: String,
}

/// An empty string from the proto means "not yet" or "none".
fn present(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

impl From<pb::Deployment> for Deployment {
    fn from(d: pb::Deployment) -> Self {
        Self {
            id: d.id,
            project_id: d.project_id,
            provider: d.provider,
            target: d.target,
            state: d.state,
            url: present(d.url),
            provider_deployment_id: present(d.provider_deployment_id),
            error: present(d.error),
            rollback_of: present(d.rollback_of),
            created_at: timestamp(d.created_at_ms),
            updated_at: timestamp(d.updated_at_ms),
            finished_at: (d.finished_at_ms > 0).then(|| timestamp(d.finished_at_ms)),
            provider_state: present(d.provider_state),
            account: d.account,
        }
    }
}

/// Body of `POST /api/deploy`. Its schema is in `routes::schema`: what `env` may hold depends on
/// `provider`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDeployment {
    /// The project to ship; must be the caller's.
    pub project_id: Option<String>,
    /// `vercel`, `netlify` or `railway`.
    pub provider: Option<String>,
    /// `production` (default) or `preview`.
    pub target: Option<String>,
    /// Environment variables set on the provider's project before the build (not for Netlify,
    /// which serves the files as they are). Names are letters, digits and `_`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// One page of deployments, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentPage {
    /// The deployments on this page.
    pub items: Vec<Deployment>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/deployments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only deployments of this project (a project id; leave it out for all of them).
    #[param(format = "uuid")]
    pub project_id: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "crate::routes::deserialize_limit")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page, unchanged; absent (or empty) for the first page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

/// One committed change of a deployment, the `data` of a `deployment` SSE event.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentEvent {
    /// Increases with every event; also the SSE `id`, so `Last-Event-ID` resumes after it.
    pub sequence: i64,
    /// The deployment.
    pub deployment_id: String,
    /// The state after this event.
    pub state: String,
    /// What happened, for people.
    pub message: String,
    /// The URL known at that point.
    pub url: Option<String>,
    /// RFC 3339 time of the event.
    pub created_at: String,
    /// True on the last event: the state is final and the stream ends.
    #[serde(rename = "final")]
    pub is_final: bool,
}

impl From<pb::DeploymentEvent> for DeploymentEvent {
    fn from(e: pb::DeploymentEvent) -> Self {
        Self {
            sequence: e.sequence,
            deployment_id: e.deployment_id,
            state: e.state,
            message: e.message,
            url: present(e.url),
            created_at: timestamp(e.created_at_ms),
            is_final: e.r#final,
        }
    }
}

/// A required string field: absent or blank is a field error.
fn required(value: Option<String>, field: &str, errors: &mut Vec<FieldError>) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => v,
        _ => {
            errors.push(FieldError {
                field: field.to_string(),
                message: "required".to_string(),
            });
            String::new()
        }
    }
}

/// 202 with the deployment and where to follow it.
fn accepted(deployment: pb::Deployment) -> HttpResponse {
    HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header((
            header::LOCATION,
            format!("/api/deployments/{}", deployment.id),
        ))
        .json(Deployment::from(deployment))
}

/// Start a deployment to your own account at the provider (connect it first with
/// `PUT /api/integrations/{provider}`). The project's first deployment to a provider creates its
/// home there (a Vercel project, a Netlify site, a Railway service, named after the project);
/// later ones reuse it. Answers at once with the deployment in state `queued`; the upload and the
/// build continue in the background (follow them at `/api/deployments/{id}/events`); a
/// deployment not finished `DEPLOY_MAX_BUILD_SECS` after its creation ends in `error`. With an
/// `Idempotency-Key` header a retried request returns the deployment the first one created.
#[utoipa::path(
    post, path = "/api/deploy", tag = "deployments",
    request_body = CreateDeployment,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255, pattern = "^[!-~]*$", description = "Up to 255 printable ASCII characters without spaces; a retry with the same key and body returns the same deployment")),
    responses(
        (status = 202, description = "Accepted; `Location` names the deployment", body = Deployment),
        (status = 400, description = "Invalid input, per field", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key already used for a different request", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "No account connected for the provider (the detail names `PUT /api/integrations/{provider}`)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "deploy-service or project-service unavailable", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_deployment(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: web::Json<CreateDeployment>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let mut errors = Vec::new();
    let project_id = required(body.project_id, "projectId", &mut errors);
    let provider = required(body.provider, "provider", &mut errors);
    let idempotency_key = match req.headers().get(IDEMPOTENCY_KEY) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) => Some(key.to_string()),
            Err(_) => {
                errors.push(FieldError {
                    field: "Idempotency-Key".to_string(),
                    message: "must be printable ASCII".to_string(),
                });
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let message = pb::CreateDeploymentRequest {
        project_id,
        provider,
        target: body.target,
        env: body.env.into_iter().collect(),
        idempotency_key,
    };
    // deploy-service checks the project with this call's assertion and uploads its files later
    // with the grant that comes with it.
    let project = message.project_id.clone();
    let deployment = state
        .downstream
        .deploy
        .clone()
        .create_deployment(request_reading_project(&caller, &project, message))
        .await
        .answered(SERVICE)?;
    Ok(accepted(deployment))
}

/// List the caller's deployments, newest first, one page at a time; optionally of one project.
#[utoipa::path(
    get, path = "/api/deployments", tag = "deployments",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of deployments", body = DeploymentPage),
        (status = 400, description = "Invalid query", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_deployments(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let page_size = crate::routes::page_size(query.limit)?;
    if query
        .project_id
        .as_ref()
        .is_some_and(|p| p.trim().is_empty())
    {
        return Err(ApiError::invalid_field(
            "projectId",
            "must be a project id; leave it out to list the deployments of every project",
        ));
    }
    let message = pb::ListDeploymentsRequest {
        project_id: query.project_id,
        page_size,
        page_token: query.cursor.unwrap_or_default(),
    };
    let page = state
        .downstream
        .deploy
        .clone()
        .list_deployments(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(DeploymentPage {
        items: page.deployments.into_iter().map(Deployment::from).collect(),
        next_cursor: present(page.next_page_token),
    }))
}

/// Get one deployment.
#[utoipa::path(
    get, path = "/api/deployments/{id}", tag = "deployments",
    params(("id" = schema::DeploymentId, Path, description = "Deployment id")),
    responses(
        (status = 200, description = "The deployment", body = Deployment),
        (status = 404, description = "No such deployment of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_deployment(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::GetDeploymentRequest {
        id: id.into_inner(),
    };
    let deployment = state
        .downstream
        .deploy
        .clone()
        .get_deployment(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(Deployment::from(deployment)))
}

/// Follow a deployment as server-sent events: every event so far, then new ones as they happen,
/// each as a `deployment` event whose SSE `id` is its sequence (send `Last-Event-ID` to resume
/// after it). The stream ends after the event with `final: true`. While idle, comment lines keep
/// the connection open. A broken stream ends with an `error` event `{status, detail}`.
#[utoipa::path(
    get, path = "/api/deployments/{id}/events", tag = "deployments",
    params(
        ("id" = schema::DeploymentId, Path, description = "Deployment id"),
        ("Last-Event-ID" = Option<i64>, Header, nullable = false, description = "Resume after this event sequence"),
    ),
    responses(
        (status = 200, description = "`text/event-stream` of `deployment` events", body = DeploymentEvent, content_type = "text/event-stream"),
        (status = 404, description = "No such deployment of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn deployment_events(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let after = match req.headers().get("last-event-id") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                ApiError::invalid_field("Last-Event-ID", "must be the id of an earlier event")
            })?,
    };
    let message = pb::WatchDeploymentRequest {
        id: id.into_inner(),
    };
    let slot = state.streams.open(&caller)?;
    let stream = state
        .downstream
        .deploy
        .clone()
        .watch_deployment(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(slot.respond(HttpResponse::Ok(), stream, watch_step(after)))
}

/// One `deployment` event with its sequence as SSE `id`.
fn deployment_event(event: pb::DeploymentEvent) -> Bytes {
    let id = event.sequence;
    let data = serde_json::to_string(&DeploymentEvent::from(event)).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("id: {id}\nevent: deployment\ndata: {data}\n\n"))
}

fn error_event(status: u16, detail: String) -> Bytes {
    sse::event(
        "error",
        &serde_json::json!({"status": status, "detail": detail}),
    )
}

/// What one outcome of a watch sends: `deployment` events after `after`, ending with the final
/// one. Dropping the gRPC stream (the client went away or stopped reading) ends the watch in
/// deploy-service.
fn watch_step(
    after: i64,
) -> impl FnMut(Result<Option<pb::DeploymentEvent>, tonic::Status>) -> sse::Step {
    move |outcome| match outcome {
        Ok(Some(event)) => {
            let done = event.r#final;
            let frame = (event.sequence > after).then(|| deployment_event(event));
            if done {
                sse::Step::Finish(frame)
            } else {
                sse::Step::Continue(frame)
            }
        }
        // Ended without a final event (deploy-service went away): say so rather than leave the
        // client guessing whether the deployment finished.
        Ok(None) => sse::Step::Finish(Some(error_event(
            StatusCode::BAD_GATEWAY.as_u16(),
            "the event stream ended before the deployment finished; watch again".to_string(),
        ))),
        Err(status) => {
            let problem = ApiError::from_status(&status, SERVICE);
            sse::Step::Finish(Some(error_event(
                problem.status().as_u16(),
                problem.to_string(),
            )))
        }
    }
}

/// Cancel a deployment in progress: the provider is asked to cancel and the deployment becomes
/// `canceled`.
#[utoipa::path(
    post, path = "/api/deployments/{id}/cancel", tag = "deployments",
    params(("id" = schema::DeploymentId, Path, description = "Deployment id")),
    responses(
        (status = 200, description = "The canceled deployment", body = Deployment),
        (status = 404, description = "No such deployment of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already final, or its provider account is no longer connected", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider cannot be reached now", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn cancel_deployment(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::CancelDeploymentRequest {
        id: id.into_inner(),
    };
    let deployment = state
        .downstream
        .deploy
        .clone()
        .cancel_deployment(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(Deployment::from(deployment)))
}

/// Roll back: make the last `ready` deployment of the same project and provider created before
/// this one live again (Netlify restores it, Vercel redeploys it, Railway rolls back to it). The
/// answer is a new deployment (`rollbackOf` set) that is followed like any other.
#[utoipa::path(
    post, path = "/api/deployments/{id}/rollback", tag = "deployments",
    params(("id" = schema::DeploymentId, Path, description = "Deployment id")),
    responses(
        (status = 202, description = "Accepted; the new deployment", body = Deployment),
        (status = 404, description = "No such deployment of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing earlier to roll back to, or its provider account is no longer connected", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rollback_deployment(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::RollbackDeploymentRequest {
        id: id.into_inner(),
    };
    let deployment = state
        .downstream
        .deploy
        .clone()
        .rollback_deployment(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(accepted(deployment))
}

/// Registers the routes under `/api/deploy`.
pub fn configure_deploy(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("").post(create_deployment));
}

/// Registers the routes under `/api/deployments`.
pub fn configure_deployments(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("").get(list_deployments))
        .service(web::resource("/{id}/events").get(deployment_events))
        .service(web::resource("/{id}/cancel").post(cancel_deployment))
        .service(web::resource("/{id}/rollback").post(rollback_deployment))
        .service(web::resource("/{id}").get(get_deployment));
}
