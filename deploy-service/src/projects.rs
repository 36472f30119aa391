//! `ProjectFiles`: what deploy-service reads from project-service, always as the deployment's
//! owner (`x-user-id`), so a user can only ship their own projects.

use autocrea_proto::project::v1 as pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use bytes::Bytes;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, USER_ID, channel};
use service_runtime::grpc_observe::TracedChannel;
use tonic::{Code, Request};

use crate::error::Error;
use crate::providers::DeployFile;

/// What deploy-service needs to know of a project besides its files.
#[derive(Debug, Clone)]
pub struct ProjectInfo {
    /// Its name (the provider home is named after it).
    pub name: String,
    /// Its framework label (Vercel's framework preset comes from it).
    pub framework: String,
}

/// A project-service client.
#[derive(Debug, Clone)]
pub struct ProjectFiles {
    client: ProjectServiceClient<TracedChannel>,
}

impl ProjectFiles {
    /// A client for project-service at `url`; connects on first use.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let options = ClientOptions {
            // A whole project in one message may take a while on a slow link.
            request_timeout: std::time::Duration::from_secs(120),
            ..ClientOptions::default()
        };
        // A client span per call, carrying its trace context to project-service.
        let channel = TracedChannel::new(channel(url, options)?, "project-service");
        let client = ProjectServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Ok(Self { client })
    }

    /// The project's name and framework label, if it exists and belongs to `owner`.
    pub async fn project(&self, owner: &str, project: &str) -> Result<ProjectInfo, Error> {
        let project = self
            .client
            .clone()
            .get_project(as_user(
                owner,
                pb::GetProjectRequest {
                    id: project.to_string(),
                },
            )?)
            .await
            .map_err(status_error)?
            .into_inner();
        Ok(ProjectInfo {
            name: project.name,
            framework: project.framework,
        })
    }

    /// Every file of `project` with its content, as `owner` sees it.
    pub async fn files(&self, owner: &str, project: &str) -> Result<Vec<DeployFile>, Error> {
        let response = self
            .client
            .clone()
            .list_files(as_user(
                owner,
                pb::ListFilesRequest {
                    project_id: project.to_string(),
                    include_content: true,
                },
            )?)
            .await
            .map_err(status_error)?;
        Ok(response
            .into_inner()
            .files
            .into_iter()
            .map(|f| DeployFile::new(f.path, Bytes::from(f.content)))
            .collect())
    }
}

fn as_user<T>(owner: &str, message: T) -> Result<Request<T>, Error> {
    let mut request = Request::new(message);
    let value = owner
        .parse()
        .map_err(|_| Error::Internal(anyhow::anyhow!("owner id is not valid metadata")))?;
    request.metadata_mut().insert(USER_ID, value);
    Ok(request)
}

fn status_error(status: tonic::Status) -> Error {
    match status.code() {
        // project-service answers INVALID_ARGUMENT for ids it could never have issued.
        Code::NotFound | Code::InvalidArgument => Error::ProjectNotFound,
        _ => Error::ProjectServiceUnavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}
