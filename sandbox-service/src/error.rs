//! The one error type of sandbox-service and its mapping to gRPC status codes.

use service_runtime::invalid::Violations;
use tonic::Status;

/// Everything that can stop a run from happening. A program that fails is not an error: its
/// exit code and flags are the result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; each violation names a field.
    #[error(transparent)]
    InvalidRequest(Violations),
    /// Too many runs are executing or queued.
    #[error("the sandbox is busy: {running} runs executing and {queued} queued; retry later")]
    Busy {
        /// Runs executing at once (the configured maximum).
        running: usize,
        /// Runs waiting (the configured queue limit).
        queued: usize,
    },
    /// The Docker engine or the runtime image cannot be used; the text says why.
    #[error("sandbox unavailable: {0}")]
    Unavailable(String),
    /// The Docker engine failed a call it should have accepted.
    #[error("docker engine: {context}")]
    Docker {
        /// What the service was doing.
        context: &'static str,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The service is shutting down.
    #[error("the sandbox service is shutting down")]
    ShuttingDown,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps a bollard error with what the service was doing.
    pub fn docker(context: &'static str) -> impl FnOnce(bollard::errors::Error) -> Self {
        move |source| Self::Docker { context, source }
    }
}

/// Whether a bollard error means the engine cannot be reached (rather than a refused call).
pub(crate) fn is_connection_error(error: &bollard::errors::Error) -> bool {
    use bollard::errors::Error as E;
    matches!(
        error,
        E::IOError { .. }
            | E::HyperResponseError { .. }
            | E::HyperLegacyError { .. }
            | E::SocketNotFoundError(_)
            | E::RequestTimeoutError
    )
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidRequest(violations) => violations.into(),
            e @ Error::Busy { .. } => Status::resource_exhausted(e.to_string()),
            e @ Error::Unavailable(_) => Status::unavailable(e.to_string()),
            e @ Error::ShuttingDown => Status::unavailable(e.to_string()),
            Error::Docker { context, source } if is_connection_error(&source) => {
                tracing::warn!(error = %source, context, "docker engine unreachable");
                Status::unavailable(format!(
                    "sandbox unavailable: the Docker engine did not answer ({context})"
                ))
            }
            e @ Error::Docker { .. } => service_runtime::grpc::internal(anyhow::Error::new(e)),
        }
    }
}
