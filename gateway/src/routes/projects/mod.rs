//! `/api/projects`: projects and their files (`files`), owner-scoped, backed by
//! project-service.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use autocrea_proto::project::v1 as pb;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{Answered, ApiError, ApiResult};
use crate::routes::{schema, timestamp};
use crate::state::AppState;

mod files;

pub use files::*;

const SERVICE: &str = "project-service";

/// A project.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Project id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Main language, e.g. `typescript`.
    pub language: String,
    /// Framework, e.g. `nextjs`.
    pub framework: String,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// Incremented by every update; send it back with `PATCH` (or as `If-Match`).
    pub version: i64,
    /// Number of files.
    pub file_count: i64,
    /// Total size of the files in bytes.
    pub total_size: i64,
}

impl From<pb::Project> for Project {
    fn from(p: pb::Project) -> Self {
        Self {
            id: p.id,
            name: p.name,
            description: p.description,
            language: p.language,
            framework: p.framework,
            created_at: timestamp(p.created_at_ms),
            updated_at: timestamp(p.updated_at_ms),
            version: p.version,
            file_count: p.file_count,
            total_size: p.total_size,
        }
    }
}

// The schemas below state what project-service checks (see `routes::schema`).

/// Body of `POST /api/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProject {
    /// 1 to 100 characters, not all whitespace, no control characters.
    #[schema(value_type = schema::ProjectName)]
    pub name: String,
    /// Up to 2,000 characters, no NUL.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub description: String,
    /// The main language, e.g. `typescript`.
    #[serde(default)]
    #[schema(value_type = schema::TechLabel)]
    pub language: String,
    /// The framework, e.g. `next.js`.
    #[serde(default)]
    #[schema(value_type = schema::TechLabel)]
    pub framework: String,
}

/// Body of `PATCH /api/projects/{id}`: the fields to change, and the version they apply to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProject {
    /// The version the change was based on (the project's `version` as last read). An
    /// `If-Match: "<version>"` header may stand in for it.
    #[serde(default, deserialize_with = "crate::routes::whole_number")]
    #[schema(required = true, value_type = i64, minimum = 1)]
    pub version: Option<i64>,
    /// New name (as in creation).
    #[schema(value_type = Option<schema::ProjectName>)]
    pub name: Option<String>,
    /// New description.
    #[schema(max_length = 2000, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// New language.
    #[schema(value_type = Option<schema::TechLabel>)]
    pub language: Option<String>,
    /// New framework.
    #[schema(value_type = Option<schema::TechLabel>)]
    pub framework: Option<String>,
}

/// One page of projects, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectPage {
    /// The projects on this page.
    pub items: Vec<Project>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/projects`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[serde(default, deserialize_with = "crate::routes::deserialize_limit")]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page, unchanged; absent (or empty) for the first page.
    #[param(pattern = "^[A-Za-z0-9_-]*$")]
    pub cursor: Option<String>,
}

fn project_response(status: actix_web::http::StatusCode, project: pb::Project) -> HttpResponse {
    let etag = format!("\"{}\"", project.version);
    let location = format!("/api/projects/{}", project.id);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::ETAG, etag));
    if status == actix_web::http::StatusCode::CREATED {
        response.insert_header((header::LOCATION, location));
    }
    response.json(Project::from(project))
}

/// Create a project.
#[utoipa::path(
    post, path = "/api/projects", tag = "projects",
    request_body = CreateProject,
    responses(
        (status = 201, description = "Created", body = Project),
        (status = 400, description = "Invalid input", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not authenticated", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "The caller already has the most projects a user may have", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_project(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateProject>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let message = pb::CreateProjectRequest {
        name: body.name,
        description: body.description,
        language: body.language,
        framework: body.framework,
    };
    let project = state
        .downstream
        .project
        .clone()
        .create_project(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(project_response(
        actix_web::http::StatusCode::CREATED,
        project,
    ))
}

/// List the caller's projects, newest first, one page at a time.
#[utoipa::path(
    get, path = "/api/projects", tag = "projects",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of projects", body = ProjectPage),
        (status = 400, description = "Invalid query", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_projects(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let page_size = crate::routes::page_size(query.limit)?;
    let message = pb::ListProjectsRequest {
        page_size,
        page_token: query.cursor.unwrap_or_default(),
    };
    let page = state
        .downstream
        .project
        .clone()
        .list_projects(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(HttpResponse::Ok().json(ProjectPage {
        items: page.projects.into_iter().map(Project::from).collect(),
        next_cursor: Some(page.next_page_token).filter(|t| !t.is_empty()),
    }))
}

/// Get one project.
#[utoipa::path(
    get, path = "/api/projects/{id}", tag = "projects",
    params(("id" = schema::ProjectId, Path, description = "Project id")),
    responses(
        (status = 200, description = "The project", body = Project),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_project(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::GetProjectRequest {
        id: id.into_inner(),
    };
    let project = state
        .downstream
        .project
        .clone()
        .get_project(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(project_response(actix_web::http::StatusCode::OK, project))
}

/// Change a project. Optimistic concurrency: the change applies only to the version it names
/// (`version` in the body or `If-Match`); a stale version gets 409.
#[utoipa::path(
    patch, path = "/api/projects/{id}", tag = "projects",
    params(("id" = schema::ProjectId, Path, description = "Project id")),
    request_body = UpdateProject,
    responses(
        (status = 200, description = "The updated project", body = Project),
        (status = 400, description = "Invalid input or no version given", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Version conflict", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn update_project(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<UpdateProject>,
) -> ApiResult<HttpResponse> {
    let body = body.into_inner();
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .map(|v| {
            v.to_str()
                .ok()
                .map(|s| s.trim().trim_start_matches("W/").trim_matches('"'))
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    ApiError::invalid_field("If-Match", "must be the project's ETag, e.g. \"3\"")
                })
        })
        .transpose()?;
    let expected_version = body.version.or(if_match).ok_or_else(|| {
        ApiError::invalid_field(
            "version",
            "required: send the version you read (or an If-Match header) so concurrent changes are not overwritten",
        )
    })?;
    let message = pb::UpdateProjectRequest {
        id: id.into_inner(),
        expected_version,
        name: body.name,
        description: body.description,
        language: body.language,
        framework: body.framework,
    };
    let project = state
        .downstream
        .project
        .clone()
        .update_project(request(&caller, message))
        .await
        .answered(SERVICE)?;
    Ok(project_response(actix_web::http::StatusCode::OK, project))
}

/// Delete a project and all its files.
#[utoipa::path(
    delete, path = "/api/projects/{id}", tag = "projects",
    params(("id" = schema::ProjectId, Path, description = "Project id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_project(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = id.into_inner();
    let message = pb::DeleteProjectRequest { id: id.clone() };
    state
        .downstream
        .project
        .clone()
        .delete_project(request(&caller, message))
        .await
        .answered(SERVICE)?;
    // Where it was deployed is forgotten too; the provider side stays.
    crate::routes::deploy_targets::forget_project(&state, &caller, id).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers the routes of this module on the `/api/projects` scope: one resource per path, so
/// that a method the path does not serve gets 405 with `Allow`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("").post(create_project).get(list_projects))
        .service(web::resource("/{id}/files").get(list_files))
        .service(
            web::resource("/{id}/files/{path:.*}")
                .put(put_file)
                .get(get_file)
                .patch(move_file)
                .delete(delete_file),
        )
        .service(
            web::resource("/{id}")
                .get(get_project)
                .patch(update_project)
                .delete(delete_project),
        );
}
