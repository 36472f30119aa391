//! `ProjectFiles`: what deploy-service reads from project-service, always with an assertion the
//! gateway signed for the deployment's owner, so a user can only ship their own projects and
//! deploy-service can never act for a user who did not ask: the owner check forwards the
//! assertion of the create call; the upload, which may run long after that call, presents the
//! grant the gateway minted with it (read the files of this one project, for a limited time).

use autocrea_proto::project::v1 as pb;
use autocrea_proto::project::v1::project_service_client::ProjectServiceClient;
use bytes::Bytes;
use secrecy::SecretString;
use service_runtime::grpc::{ClientOptions, MAX_MESSAGE_SIZE, channel};
use service_runtime::grpc_observe::TracedChannel;
use service_runtime::identity::{ASSERTION, Caller, attach};
use tonic::{Code, Request};

use crate::error::Error;
use crate::providers::DeployFile;

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

    /// Checks that `project` exists and belongs to `caller`, forwarding the caller's assertion.
    pub async fn check_owner(&self, caller: &Caller, project: &str) -> Result<(), Error> {
        self.client
            .clone()
            .get_project(caller.forward(pb::GetProjectRequest {
                id: project.to_string(),
            }))
            .await
            .map_err(status_error)?;
        Ok(())
    }

    /// Every file of `project` with its content, read with `grant` (the owner's grant to read
    /// exactly this project's files).
    pub async fn files(
        &self,
        grant: &SecretString,
        project: &str,
    ) -> Result<Vec<DeployFile>, Error> {
        let mut request = Request::new(pb::ListFilesRequest {
            project_id: project.to_string(),
            include_content: true,
        });
        attach(&mut request, ASSERTION, grant);
        let response = self
            .client
            .clone()
            .list_files(request)
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
