//! `/api/projects`: projects and their files, owner-scoped, backed by project-service.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use autocrea_proto::project::v1 as pb;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::downstream::request;
use crate::identity::Caller;
use crate::problem::{ApiError, ApiResult};
use crate::routes::{schema, timestamp};
use crate::state::AppState;

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

/// How file content is carried in JSON.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text.
    #[default]
    Utf8,
    /// Base64 (standard alphabet, padded), for binary content.
    Base64,
}

/// Body of `PUT /api/projects/{id}/files/{path}`. Its schema is in `routes::schema`: which
/// `content` is valid depends on `encoding`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PutFile {
    /// The content, as text or base64 according to `encoding`.
    pub content: String,
    /// `utf8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Body of `PATCH /api/projects/{id}/files/{path}`: rename (move) the file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MoveFile {
    /// The file's new path relative to the project root, e.g. `src/app.ts` (the rules of every
    /// file path).
    #[schema(value_type = schema::FilePath)]
    pub new_path: String,
}

/// A file of a project.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct File {
    /// Path relative to the project root.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
    /// RFC 3339 time of creation.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
    /// The content (only when reading one file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// How `content` is encoded: `utf8` when the file is valid UTF-8, else `base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<Encoding>,
}

impl File {
    fn from_pb(f: pb::File, with_content: bool) -> Self {
        let (content, encoding) = if with_content {
            match String::from_utf8(f.content) {
                Ok(text) => (Some(text), Some(Encoding::Utf8)),
                Err(e) => (Some(BASE64.encode(e.into_bytes())), Some(Encoding::Base64)),
            }
        } else {
            (None, None)
        };
        Self {
            path: f.path,
            size: f.size,
            sha256: f.sha256,
            created_at: timestamp(f.created_at_ms),
            updated_at: timestamp(f.updated_at_ms),
            content,
            encoding,
        }
    }
}

/// The files of a project, ordered by path.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    /// The files, without content.
    pub items: Vec<File>,
}

fn grpc_error(status: tonic::Status) -> ApiError {
    ApiError::from_status(&status, SERVICE)
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
        .map_err(grpc_error)?
        .into_inner();
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
        .map_err(|status| ApiError::from_status(&status, SERVICE))?
        .into_inner();
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
        .map_err(grpc_error)?
        .into_inner();
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
        .map_err(grpc_error)?
        .into_inner();
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
    let message = pb::DeleteProjectRequest {
        id: id.into_inner(),
    };
    state
        .downstream
        .project
        .clone()
        .delete_project(request(&caller, message))
        .await
        .map_err(grpc_error)?;
    Ok(HttpResponse::NoContent().finish())
}

/// List a project's files (without content), ordered by path.
#[utoipa::path(
    get, path = "/api/projects/{id}/files", tag = "files",
    params(("id" = schema::ProjectId, Path, description = "Project id")),
    responses(
        (status = 200, description = "The files", body = FileList),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_files(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let message = pb::ListFilesRequest {
        project_id: id.into_inner(),
        include_content: false,
    };
    let files = state
        .downstream
        .project
        .clone()
        .list_files(request(&caller, message))
        .await
        .map_err(grpc_error)?
        .into_inner();
    Ok(HttpResponse::Ok().json(FileList {
        items: files
            .files
            .into_iter()
            .map(|f| File::from_pb(f, false))
            .collect(),
    }))
}

/// Create or replace a file.
#[utoipa::path(
    put, path = "/api/projects/{id}/files/{path}", tag = "files",
    params(
        ("id" = schema::ProjectId, Path, description = "Project id"),
        ("path" = schema::FilePath, Path, description = "File path relative to the project root, e.g. `src/main.ts`"),
    ),
    request_body = PutFile,
    responses(
        (status = 201, description = "Created", body = File),
        (status = 200, description = "Replaced", body = File),
        (status = 400, description = "Invalid path or content", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project of the caller", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 422, description = "Project size or file count limit reached", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_file(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Path<(String, String)>,
    body: web::Json<PutFile>,
) -> ApiResult<HttpResponse> {
    let (project_id, path) = params.into_inner();
    let body = body.into_inner();
    let content = match body.encoding {
        Encoding::Utf8 => body.content.into_bytes(),
        Encoding::Base64 => BASE64
            .decode(body.content.as_bytes())
            .map_err(|e| ApiError::invalid_field("content", format!("is not valid base64: {e}")))?,
    };
    let message = pb::PutFileRequest {
        project_id,
        path,
        content,
    };
    let put = state
        .downstream
        .project
        .clone()
        .put_file(request(&caller, message))
        .await
        .map_err(grpc_error)?
        .into_inner();
    let file = put
        .file
        .ok_or_else(|| ApiError::internal("project-service answered PutFile without a file"))?;
    let mut response = if put.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(File::from_pb(file, false)))
}

/// Read a file with its content.
#[utoipa::path(
    get, path = "/api/projects/{id}/files/{path}", tag = "files",
    params(
        ("id" = schema::ProjectId, Path, description = "Project id"),
        ("path" = schema::FilePath, Path, description = "File path relative to the project root"),
    ),
    responses(
        (status = 200, description = "The file with its content", body = File),
        (status = 404, description = "No such project or file", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_file(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (project_id, path) = params.into_inner();
    let message = pb::GetFileRequest { project_id, path };
    let file = state
        .downstream
        .project
        .clone()
        .get_file(request(&caller, message))
        .await
        .map_err(grpc_error)?
        .into_inner();
    Ok(HttpResponse::Ok().json(File::from_pb(file, true)))
}

/// Rename (move) a file within its project, keeping its content. Answers the file at its new
/// path, without content.
#[utoipa::path(
    patch, path = "/api/projects/{id}/files/{path}", tag = "files",
    params(
        ("id" = schema::ProjectId, Path, description = "Project id"),
        ("path" = schema::FilePath, Path, description = "The file's current path"),
    ),
    request_body = MoveFile,
    responses(
        (status = 200, description = "Renamed", body = File),
        (status = 400, description = "Invalid path or new path", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such project or file", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 409, description = "A file already exists at the new path", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn move_file(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Path<(String, String)>,
    body: web::Json<MoveFile>,
) -> ApiResult<HttpResponse> {
    let (project_id, path) = params.into_inner();
    let message = pb::MoveFileRequest {
        project_id,
        path,
        new_path: body.into_inner().new_path,
    };
    let file = state
        .downstream
        .project
        .clone()
        .move_file(request(&caller, message))
        .await
        .map_err(grpc_error)?
        .into_inner();
    Ok(HttpResponse::Ok().json(File::from_pb(file, false)))
}

/// Delete a file.
#[utoipa::path(
    delete, path = "/api/projects/{id}/files/{path}", tag = "files",
    params(
        ("id" = schema::ProjectId, Path, description = "Project id"),
        ("path" = schema::FilePath, Path, description = "File path relative to the project root"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such project or file", body = crate::problem::Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_file(
    state: web::Data<AppState>,
    caller: Caller,
    params: web::Path<(String, String)>,
) -> ApiResult<HttpResponse> {
    let (project_id, path) = params.into_inner();
    let message = pb::DeleteFileRequest { project_id, path };
    state
        .downstream
        .project
        .clone()
        .delete_file(request(&caller, message))
        .await
        .map_err(grpc_error)?;
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
