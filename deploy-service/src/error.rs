//! The one error type of deploy-service and its mapping to gRPC statuses.

use tonic::Status;

use crate::model::{Provider, State};
use crate::providers::ProviderError;

pub use service_runtime::db::DbContext;
use service_runtime::db::DbFailure;
pub use service_runtime::invalid::Invalid;

/// Everything a deploy-service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the caller must change it.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No deployment with that id belongs to the caller.
    #[error("deployment not found")]
    DeploymentNotFound,
    /// project-service does not know the project for this caller.
    #[error("project not found")]
    ProjectNotFound,
    /// The caller has no account connected for the provider (and the operator's account is
    /// not opted in for it).
    #[error(
        "no {provider} account is connected: connect yours with PUT /api/integrations/{} and \
         your token",
        provider.as_str()
    )]
    NotConnected {
        /// The provider asked for.
        provider: Provider,
    },
    /// The connection to delete does not exist.
    #[error("no {provider} connection to remove")]
    ConnectionNotFound {
        /// The provider.
        provider: Provider,
    },
    /// The deployment can no longer change.
    #[error("deployment is already {}", state.as_str())]
    AlreadyFinal {
        /// Its final state.
        state: State,
    },
    /// Rollback asked where no earlier ready deployment exists.
    #[error("no earlier ready deployment of this project on {provider} to roll back to")]
    NothingToRollBack {
        /// The provider.
        provider: Provider,
    },
    /// The idempotency key was used before by this user for a different request.
    #[error("idempotency key already used for a different deployment request; use a new key")]
    IdempotencyKeyReused,
    /// project-service refused the owner's assertion or grant (expired, or for another project).
    #[error("project-service refused to read the project for its owner: {0}")]
    ProjectAccessRefused(String),
    /// project-service could not be reached or failed.
    #[error("project-service is unavailable: {0}")]
    ProjectServiceUnavailable(String),
    /// A provider call failed (only surfaced by calls that talk to the provider directly, such as
    /// cancel; background failures become the deployment's error text).
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The database failed: unreachable (callers may try again) or a statement failed; the
    /// cause is logged, never shown.
    #[error(transparent)]
    Database(#[from] DbFailure),
    /// Anything unexpected (corrupt row, failed query); logged, never shown to callers.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The result of deploy-service operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid(invalid) => invalid.into(),
            Error::DeploymentNotFound
            | Error::ProjectNotFound
            | Error::ConnectionNotFound { .. } => Status::not_found(message),
            Error::NotConnected { .. }
            | Error::AlreadyFinal { .. }
            | Error::NothingToRollBack { .. } => Status::failed_precondition(message),
            Error::IdempotencyKeyReused => Status::already_exists(message),
            Error::ProjectServiceUnavailable(_) => Status::unavailable(message),
            // The caller's assertion passed here, so a refusal there is this platform's fault
            // (keys or clocks apart), not the caller's.
            Error::ProjectAccessRefused(_) => Status::internal(message),
            Error::Provider(provider) => {
                if provider.is_transient() {
                    Status::unavailable(message)
                } else {
                    Status::failed_precondition(message)
                }
            }
            Error::Database(failure) => failure.into(),
            Error::Internal(cause) => service_runtime::grpc::internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;
    use tonic_types::StatusExt;

    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_and_other_failures_internal() {
        let reset: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))
        .db("insert deployment")
        .map_err(Error::from);
        let status = Status::from(reset.unwrap_err());
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(
            status.message().contains("try again"),
            "{}",
            status.message()
        );
        let closed: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::PoolClosed)
            .db("select deployment")
            .map_err(Error::from);
        assert_eq!(
            Status::from(closed.unwrap_err()).code(),
            tonic::Code::Unavailable
        );
        let other: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::RowNotFound)
            .db("select deployment")
            .map_err(Error::from);
        assert_eq!(
            Status::from(other.unwrap_err()).code(),
            tonic::Code::Internal
        );
    }

    #[test]
    fn invalid_carries_field_violation() {
        let status = Status::from(Error::from(Invalid::new("provider", "unknown")));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("details");
        assert_eq!(bad.field_violations[0].field, "provider");
    }

    #[test]
    fn a_refused_assertion_on_project_service_is_internal_with_the_reason() {
        let status = Status::from(Error::ProjectAccessRefused(
            "the caller assertion has expired".into(),
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("has expired"), "{status:?}");
    }

    #[test]
    fn a_missing_connection_names_the_route_to_add_one() {
        let status = Status::from(Error::NotConnected {
            provider: Provider::Railway,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("PUT /api/integrations/railway"),
            "{status:?}"
        );
        let status = Status::from(Error::ConnectionNotFound {
            provider: Provider::Vercel,
        });
        assert_eq!(status.code(), Code::NotFound);
    }
}
