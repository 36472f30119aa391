//! The gRPC face of project-service: each handler reads the caller, validates the request into
//! typed values, calls [`ProjectStore`] and maps the result.

use autocrea_proto::project::v1 as pb;
use autocrea_proto::project::v1::project_service_server::ProjectService;
use service_runtime::grpc::{caller, project_reader};
use tonic::{Request, Response, Status};

use crate::error::{Error, Invalid, Result};
use crate::store::PROJECT_PAGES;
use crate::store::{
    FileRecord, NewProject, ProjectChanges, ProjectQuota, ProjectRecord, ProjectStore, UserQuota,
};
use crate::validated::{
    Description, ExpectedVersion, FileContent, FilePath, PageSize, ProjectId, ProjectName,
    TechLabel,
};

/// The `ProjectService` implementation.
#[derive(Debug, Clone)]
pub struct ProjectApi {
    store: ProjectStore,
    quota: ProjectQuota,
    user_quota: UserQuota,
    max_file_bytes: u64,
}

impl ProjectApi {
    /// Serves `store`, holding every project within `quota`, every user's projects together
    /// within `user_quota` and every file within `max_file_bytes`.
    pub fn new(
        store: ProjectStore,
        quota: ProjectQuota,
        user_quota: UserQuota,
        max_file_bytes: u64,
    ) -> Self {
        Self {
            store,
            quota,
            user_quota,
            max_file_bytes,
        }
    }
}

/// An id that is not a UUID names no project: NOT_FOUND like any unknown id.
fn project_id(raw: &str) -> Result<ProjectId> {
    ProjectId::parse(raw).ok_or(Error::ProjectNotFound)
}

fn optional<T>(
    raw: Option<String>,
    parse: impl FnOnce(&str) -> Result<T, crate::error::Invalid>,
) -> Result<Option<T>> {
    Ok(raw.as_deref().map(parse).transpose()?)
}

#[tonic::async_trait]
impl ProjectService for ProjectApi {
    async fn create_project(
        &self,
        request: Request<pb::CreateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let owner = caller(&request)?;
        let req = request.into_inner();
        let new = NewProject {
            name: ProjectName::parse(&req.name).map_err(Error::from)?,
            description: Description::parse(&req.description).map_err(Error::from)?,
            language: TechLabel::parse("language", &req.language).map_err(Error::from)?,
            framework: TechLabel::parse("framework", &req.framework).map_err(Error::from)?,
        };
        let project = self
            .store
            .create_project(&owner, new, self.user_quota)
            .await?;
        Ok(Response::new(project.into()))
    }

    async fn get_project(
        &self,
        request: Request<pb::GetProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        // A deployment's upload reads its project (name, framework) with its grant too.
        let owner = project_reader(&request, &request.get_ref().id)?;
        let id = project_id(&request.get_ref().id)?;
        let project = self.store.get_project(&owner, &id).await?;
        Ok(Response::new(project.into()))
    }

    async fn list_projects(
        &self,
        request: Request<pb::ListProjectsRequest>,
    ) -> Result<Response<pb::ListProjectsResponse>, Status> {
        let owner = caller(&request)?;
        let req = request.into_inner();
        let size = PageSize::parse(req.page_size).map_err(Error::from)?;
        let after = match req.page_token.as_str() {
            "" => None,
            token => Some(
                PROJECT_PAGES
                    .decode(token, &[&owner])
                    .map_err(Error::from)?,
            ),
        };
        let page = self
            .store
            .list_projects(&owner, size, after.as_ref())
            .await?;
        Ok(Response::new(pb::ListProjectsResponse {
            projects: page.projects.into_iter().map(Into::into).collect(),
            next_page_token: page
                .next
                .map(|cursor| PROJECT_PAGES.encode(&cursor, &[&owner]))
                .unwrap_or_default(),
        }))
    }

    async fn update_project(
        &self,
        request: Request<pb::UpdateProjectRequest>,
    ) -> Result<Response<pb::Project>, Status> {
        let owner = caller(&request)?;
        let req = request.into_inner();
        let id = project_id(&req.id)?;
        let expected = ExpectedVersion::parse(req.expected_version).map_err(Error::from)?;
        let changes = ProjectChanges {
            name: optional(req.name, ProjectName::parse)?,
            description: optional(req.description, Description::parse)?,
            language: optional(req.language, |v| TechLabel::parse("language", v))?,
            framework: optional(req.framework, |v| TechLabel::parse("framework", v))?,
        };
        let project = self
            .store
            .update_project(&owner, &id, expected, changes)
            .await?;
        Ok(Response::new(project.into()))
    }

    async fn delete_project(
        &self,
        request: Request<pb::DeleteProjectRequest>,
    ) -> Result<Response<pb::DeleteProjectResponse>, Status> {
        let owner = caller(&request)?;
        let id = project_id(&request.get_ref().id)?;
        self.store.delete_project(&owner, &id).await?;
        Ok(Response::new(pb::DeleteProjectResponse {}))
    }

    async fn put_file(
        &self,
        request: Request<pb::PutFileRequest>,
    ) -> Result<Response<pb::PutFileResponse>, Status> {
        let owner = caller(&request)?;
        let req = request.into_inner();
        let id = project_id(&req.project_id)?;
        let path = FilePath::parse(&req.path).map_err(Error::from)?;
        let content = FileContent::new(req.content, self.max_file_bytes).map_err(Error::from)?;
        let (file, created) = self
            .store
            .put_file(&owner, &id, &path, content, self.quota, self.user_quota)
            .await?;
        Ok(Response::new(pb::PutFileResponse {
            file: Some(file.into()),
            created,
        }))
    }

    async fn get_file(
        &self,
        request: Request<pb::GetFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let owner = caller(&request)?;
        let req = request.get_ref();
        let id = project_id(&req.project_id)?;
        let path = FilePath::parse(&req.path).map_err(Error::from)?;
        let file = self.store.get_file(&owner, &id, &path).await?;
        Ok(Response::new(file.into()))
    }

    async fn list_files(
        &self,
        request: Request<pb::ListFilesRequest>,
    ) -> Result<Response<pb::ListFilesResponse>, Status> {
        // The one call a deployment's upload makes with its grant for this project.
        let owner = project_reader(&request, &request.get_ref().project_id)?;
        let req = request.get_ref();
        let id = project_id(&req.project_id)?;
        let files = self
            .store
            .list_files(&owner, &id, req.include_content)
            .await?;
        Ok(Response::new(pb::ListFilesResponse {
            files: files.into_iter().map(Into::into).collect(),
        }))
    }

    async fn delete_file(
        &self,
        request: Request<pb::DeleteFileRequest>,
    ) -> Result<Response<pb::DeleteFileResponse>, Status> {
        let owner = caller(&request)?;
        let req = request.get_ref();
        let id = project_id(&req.project_id)?;
        let path = FilePath::parse(&req.path).map_err(Error::from)?;
        self.store.delete_file(&owner, &id, &path).await?;
        Ok(Response::new(pb::DeleteFileResponse {}))
    }

    async fn move_file(
        &self,
        request: Request<pb::MoveFileRequest>,
    ) -> Result<Response<pb::File>, Status> {
        let owner = caller(&request)?;
        let req = request.get_ref();
        let id = project_id(&req.project_id)?;
        let from = FilePath::parse(&req.path).map_err(Error::from)?;
        let to = FilePath::parse(&req.new_path)
            .map_err(|e| Error::from(Invalid::new("newPath", e.message)))?;
        let file = self.store.move_file(&owner, &id, &from, &to).await?;
        Ok(Response::new(file.into()))
    }
}

impl From<ProjectRecord> for pb::Project {
    fn from(p: ProjectRecord) -> Self {
        Self {
            id: p.id,
            owner_id: p.owner_id,
            name: p.name,
            description: p.description,
            language: p.language,
            framework: p.framework,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
            version: p.version,
            file_count: p.file_count,
            total_size: p.total_size,
        }
    }
}

impl From<FileRecord> for pb::File {
    fn from(f: FileRecord) -> Self {
        Self {
            path: f.path,
            content: f.content.unwrap_or_default(),
            size: f.size,
            sha256: f.sha256,
            created_at_ms: f.created_at_ms,
            updated_at_ms: f.updated_at_ms,
        }
    }
}
