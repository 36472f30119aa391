//! `ProjectFiles`: what deploy-service reads from project-service, always with an assertion the
//! gateway signed for the deployment's owner, so a user can only ship their own projects and
//! deploy-service can never act for a user who did not ask. Calls made while the user's request
//! lasts forward the assertion it came with (`Caller::assertion`); the upload, which may run long
//! after it (on another replica, after a restart), presents the grant the gateway minted with the
//! create call: read this one project and its files, for a limited time.

use autocrea_proto::project::v1 as pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use bytes::Bytes;
use secrecy::SecretString;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, channel};
use service_runtime::grpc_observe::TracedChannel;
use service_runtime::identity::{ASSERTION, attach};
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

    /// The project's name and framework label, if it exists and belongs to the user `assertion`
    /// (a forwarded caller assertion, or the deployment's grant) vouches for.
    pub async fn project(
        &self,
        assertion: &SecretString,
        project: &str,
    ) -> Result<ProjectInfo, Error> {
        let project = self
            .client
            .clone()
            .get_project(presenting(
                assertion,
                pb::GetProjectRequest {
                    id: project.to_string(),
                },
            ))
            .await
            .map_err(status_error)?
            .into_inner();
        Ok(ProjectInfo {
            name: project.name,
            framework: project.framework,
        })
    }

    /// Every file of `project` with its content, as the user `assertion` vouches for sees it.
    pub async fn files(
        &self,
        assertion: &SecretString,
        project: &str,
    ) -> Result<Vec<DeployFile>, Error> {
        let response = self
            .client
            .clone()
            .list_files(presenting(
                assertion,
                pb::ListFilesRequest {
                    project_id: project.to_string(),
                    include_content: true,
                },
            ))
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

/// `message` carrying `assertion`: deploy-service holds no key and signs nothing itself.
fn presenting<T>(assertion: &SecretString, message: T) -> Request<T> {
    let mut request = Request::new(message);
    attach(&mut request, ASSERTION, assertion);
    request
}

fn status_error(status: tonic::Status) -> Error {
    match status.code() {
        // project-service answers INVALID_ARGUMENT for ids it could never have issued.
        Code::NotFound | Code::InvalidArgument => Error::ProjectNotFound,
        // The assertion or grant was refused: expired, or not meant for this project.
        Code::Unauthenticated | Code::PermissionDenied => {
            Error::ProjectAccessRefused(status.message().to_string())
        }
        _ => Error::ProjectServiceUnavailable(format!("{:?}: {}", status.code(), status.message())),
    }
}
