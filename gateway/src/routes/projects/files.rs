//! `/api/projects/{id}/files`: a project's files, created, replaced, read, listed, renamed and
//! deleted.

use super::*;

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
        .answered(SERVICE)?;
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
        (status = 422, description = "Project size, file count or per-user storage limit reached", body = crate::problem::Problem, content_type = "application/problem+json"),
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
        .answered(SERVICE)?;
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
        .answered(SERVICE)?;
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
        .answered(SERVICE)?;
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
        .answered(SERVICE)?;
    Ok(HttpResponse::NoContent().finish())
}
