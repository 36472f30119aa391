//! `/api/integrations`: the caller's own Vercel, Netlify and Railway accounts, which their
//! deployments go to. deploy-service verifies a token with the provider before saving it and
//! keeps it encrypted; no answer ever carries a token.

use actix_web::{HttpResponse, web};
use autocrea_proto::deploy::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{Answered, ApiResult};
use crate::routes::timestamp;
use crate::state::AppState;

const SERVICE: &str = "deploy-service";

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(put_connection, list_connections, delete_connection),
    components(schemas(Connection, PutConnection, ConnectionList, ProviderName)),
    tags((name = "integrations", description = "Your own Vercel, Netlify and Railway accounts, which your deployments go to"))
)]
pub struct IntegrationsApi;

/// A provider a connection is for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// Vercel.
    Vercel,
    /// Netlify.
    Netlify,
    /// Railway.
    Railway,
}

/// A saved connection to one of the caller's provider accounts. Never holds the token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// `vercel`, `netlify` or `railway`.
    pub provider: String,
    /// The account's id as the provider reports it.
    pub account_id: String,
    /// The account's name as the provider reports it.
    pub account_name: String,
    /// The last four characters of the token, to tell tokens apart.
    pub token_last4: String,
    /// Vercel: the team deployments go to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// Railway: the project services are created in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Railway: the environment deployed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// RFC 3339 time it was saved.
    pub created_at: String,
    /// RFC 3339 time a deployment last used it; absent before.
    pub last_used_at: Option<String>,
}

fn present(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

impl From<pb::Connection> for Connection {
    fn from(c: pb::Connection) -> Self {
        Self {
            provider: c.provider,
            account_id: c.account_id,
            account_name: c.account_name,
            token_last4: c.token_last4,
            team_id: present(c.team_id),
            project_id: present(c.project_id),
            environment_id: present(c.environment_id),
            created_at: timestamp(c.created_at_ms),
            last_used_at: (c.last_used_at_ms > 0).then(|| timestamp(c.last_used_at_ms)),
        }
    }
}

/// Body of `PUT /api/integrations/{provider}`. Its `Debug` leaves the token out.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutConnection {
    /// Your access token at the provider: a Vercel access token, a Netlify personal access
    /// token, a Railway account or workspace token. Checked with the provider before it is
    /// saved; stored encrypted, never shown again.
    #[schema(pattern = "^[!-~]+$", min_length = 1, max_length = 4096)]
    pub token: String,
    /// Vercel only: the team to deploy to (`team_…`); your personal account when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", min_length = 1, max_length = 255)]
    pub team_id: Option<String>,
    /// Railway only: the project each AutoCrea project gets its own service in. Either this or
    /// `workspaceId` is required for Railway.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", min_length = 1, max_length = 255)]
    pub project_id: Option<String>,
    /// Railway only: the environment to deploy to; the project's `production` environment (or
    /// its only one) when absent.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", min_length = 1, max_length = 255)]
    pub environment_id: Option<String>,
    /// Railway only, without `projectId`: a project named `autocrea` is created in this
    /// workspace.
    #[schema(pattern = "^[A-Za-z0-9_-]+$", min_length = 1, max_length = 255)]
    pub workspace_id: Option<String>,
}

impl std::fmt::Debug for PutConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutConnection")
            .field("team_id", &self.team_id)
            .field("project_id", &self.project_id)
            .field("environment_id", &self.environment_id)
            .field("workspace_id", &self.workspace_id)
            .finish_non_exhaustive()
    }
}

/// The caller's connections.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionList {
    /// One per connected provider, by provider name.
    pub items: Vec<Connection>,
}

/// Connect (or replace) your account at a provider. The token is checked with the provider
/// first (Vercel `GET /v2/user`, Netlify `GET /api/v1/user`, Railway `me`); a refused token is
/// 422 with the provider's answer, and nothing is stored. Your deployments to that provider then
/// go to this account.
#[utoipa::path(
    put, path = "/api/integrations/{provider}", tag = "integrations",
    params(("provider" = ProviderName, Path, description = "The provider")),
    request_body = PutConnection,
    responses(
        (status = 200, description = "Saved; the connection without its token", body = Connection),
        (status = 400, description = "Invalid input, per field", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The provider refused the token (the detail gives its answer)", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider or deploy-service cannot be reached now", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_connection(
    state: web::Data<AppState>,
    caller: Caller,
    provider: web::Path<String>,
    body: web::Json<PutConnection>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let message = pb::PutConnectionRequest {
        provider: provider.into_inner(),
        token: body.token,
        team_id: body.team_id,
        project_id: body.project_id,
        environment_id: body.environment_id,
        workspace_id: body.workspace_id,
    };
    let connection = state
        .downstream
        .deploy
        .clone()
        .put_connection(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(Connection::from(connection)))
}

/// Your connected provider accounts (never their tokens).
#[utoipa::path(
    get, path = "/api/integrations", tag = "integrations",
    responses((status = 200, description = "Your connections", body = ConnectionList)),
    security(("bearer" = []))
)]
pub async fn list_connections(
    state: web::Data<AppState>,
    caller: Caller,
) -> ApiResult<HttpResponse> {
    let list = state
        .downstream
        .deploy
        .clone()
        .list_connections(request(&caller, pb::ListConnectionsRequest {}))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(ConnectionList {
        items: list.connections.into_iter().map(Connection::from).collect(),
    }))
}

/// Remove your connection to a provider. What was deployed stays at the provider.
#[utoipa::path(
    delete, path = "/api/integrations/{provider}", tag = "integrations",
    params(("provider" = ProviderName, Path, description = "The provider")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Not a provider", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No connection to that provider", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_connection(
    state: web::Data<AppState>,
    caller: Caller,
    provider: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::DeleteConnectionRequest {
        provider: provider.into_inner(),
    };
    state
        .downstream
        .deploy
        .clone()
        .delete_connection(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers the routes under `/api/integrations`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("").get(list_connections))
        .service(
            web::resource("/{provider}")
                .put(put_connection)
                .delete(delete_connection),
        );
}
