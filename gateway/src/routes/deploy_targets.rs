//! `GET /api/projects/{id}/deployments/targets`: where a project lives at each provider it was
//! deployed to (its Vercel project, Netlify site, Railway service), and forgetting those homes
//! when the project is deleted.

use actix_web::{HttpResponse, web};
use autocrea_proto::deploy::v1 as pb;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::downstream::{request, request_via_project};
use crate::identity::Caller;
use crate::problem::{Answered, ApiResult};
use crate::routes::{schema, timestamp};
use crate::state::AppState;

const SERVICE: &str = "deploy-service";

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(list_targets),
    components(schemas(DeploymentTarget, DeploymentTargetList))
)]
pub struct DeployTargetsApi;

/// A project's home at one provider, created by its first deployment there.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentTarget {
    /// `vercel`, `netlify` or `railway`.
    pub provider: String,
    /// Vercel project id, Netlify site id or Railway service id.
    pub target_id: String,
    /// Its name at the provider.
    pub target_name: String,
    /// The provider account it lives in.
    pub account_id: String,
    /// Public URL of its last ready deployment.
    pub url: Option<String>,
    /// RFC 3339 time it was created.
    pub created_at: String,
}

/// Where a project lives.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentTargetList {
    /// One per provider the project was deployed to, by provider name.
    pub items: Vec<DeploymentTarget>,
}

/// Where this project lives at each provider it was deployed to: the Vercel project, Netlify
/// site or Railway service its deployments go to, in your own account.
#[utoipa::path(
    get, path = "/api/projects/{id}/deployments/targets", tag = "deployments",
    params(("id" = schema::ProjectId, Path, description = "Project id")),
    responses(
        (status = 200, description = "The project's homes at the providers", body = DeploymentTargetList),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_targets(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::ListTargetsRequest {
        project_id: id.into_inner(),
    };
    let targets = state
        .downstream
        .deploy
        .clone()
        // deploy-service checks the project with project-service, forwarding this assertion.
        .list_targets(request_via_project(&caller, message))
        .await
        .answered(SERVICE)?
        .targets;
    let items = targets
        .into_iter()
        .map(|t| DeploymentTarget {
            provider: t.provider,
            target_id: t.target_id,
            target_name: t.target_name,
            account_id: t.account_id,
            url: Some(t.url).filter(|u| !u.is_empty()),
            created_at: timestamp(t.created_at_ms),
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeploymentTargetList { items }))
}

/// Forgets the provider homes of the caller's deleted project (the provider side stays as it
/// is). Best effort: the project is gone either way, and a home of a project id that no longer
/// exists is never used again.
pub async fn forget_project(state: &AppState, caller: &Caller, project_id: String) {
    let message = pb::ForgetProjectRequest { project_id };
    if let Err(status) = state
        .downstream
        .deploy
        .clone()
        .forget_project(request(caller, message))
        .await
    {
        tracing::warn!(
            code = ?status.code(),
            message = status.message(),
            "cannot forget the deleted project's provider homes"
        );
    }
}

/// Registers the route under `/api/projects/{id}/deployments`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/targets").get(list_targets));
}
