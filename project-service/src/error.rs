//! The one error type of project-service and its mapping to gRPC statuses.

use tonic::Status;

pub use service_runtime::db::DbContext;
use service_runtime::db::DbFailure;
pub use service_runtime::invalid::Invalid;

/// Everything a project-service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the caller must change it.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No project with that id belongs to the caller (it may belong to someone else).
    #[error("project not found")]
    ProjectNotFound,
    /// The project has no file at that path.
    #[error("file not found")]
    FileNotFound,
    /// A file already has the path a rename asked for.
    #[error("a file already exists at {path}; delete it first or choose another path")]
    FileExists {
        /// The path asked for.
        path: String,
    },
    /// The project changed since the caller read it.
    #[error(
        "version conflict: expected {expected}, current {current}; read the project again and retry"
    )]
    VersionConflict {
        /// The version the caller based its change on.
        expected: i64,
        /// The version stored now.
        current: i64,
    },
    /// Writing the file would exceed the number of files a project may hold.
    #[error(
        "project already holds the maximum of {limit} files; delete a file before adding another"
    )]
    TooManyFiles {
        /// The limit.
        limit: u64,
    },
    /// Writing the file would exceed the total size a project may hold.
    #[error(
        "project would hold {would_be} bytes, over the limit of {limit} bytes; delete files or make them smaller"
    )]
    ProjectTooLarge {
        /// The limit.
        limit: u64,
        /// The total size after the write.
        would_be: i64,
    },
    /// Creating a project would exceed the number of projects one user may have.
    #[error(
        "you already have the maximum of {limit} projects (PROJECT_MAX_PROJECTS_PER_USER); \
         delete a project before creating another"
    )]
    TooManyProjects {
        /// The limit.
        limit: u64,
    },
    /// Writing the file would exceed the bytes one user may store over all their projects.
    #[error(
        "your projects would hold {would_be} bytes in all, over the per-user storage limit of \
         {limit} bytes (PROJECT_MAX_USER_BYTES); delete files or projects to make room"
    )]
    UserStorageFull {
        /// The limit.
        limit: u64,
        /// The user's total after the write.
        would_be: i64,
    },
    /// The database failed: unreachable (callers may try again) or a statement failed; the
    /// cause is logged, never shown.
    #[error(transparent)]
    Database(#[from] DbFailure),
    /// Anything unexpected (corrupt row, failed query); logged, never shown to callers.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The result of project-service operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        match error {
            Error::Invalid(invalid) => invalid.into(),
            Error::ProjectNotFound | Error::FileNotFound => Status::not_found(message),
            Error::VersionConflict { .. } => Status::aborted(message),
            Error::FileExists { .. } => Status::already_exists(message),
            // FAILED_PRECONDITION: the gateway answers 422, the request is fine but the state
            // of the caller's projects does not allow it.
            Error::TooManyFiles { .. }
            | Error::ProjectTooLarge { .. }
            | Error::TooManyProjects { .. }
            | Error::UserStorageFull { .. } => Status::failed_precondition(message),
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
    fn invalid_carries_field_violation() {
        let status = Status::from(Error::from(Invalid::new("name", "must not be empty")));
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status
            .get_details_bad_request()
            .expect("bad request details");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "name");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
    }

    #[test]
    fn an_unreachable_database_is_unavailable_and_other_failures_internal() {
        let refused: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
        .db("insert project")
        .map_err(Error::from);
        let status = Status::from(refused.unwrap_err());
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().contains("try again"),
            "{}",
            status.message()
        );
        let timed_out: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::PoolTimedOut)
            .db("select project")
            .map_err(Error::from);
        assert_eq!(
            Status::from(timed_out.unwrap_err()).code(),
            Code::Unavailable
        );
        let other: Result<()> = Err::<(), sqlx::Error>(sqlx::Error::RowNotFound)
            .db("select project")
            .map_err(Error::from);
        assert_eq!(Status::from(other.unwrap_err()).code(), Code::Internal);
    }

    #[test]
    fn a_taken_path_is_already_exists() {
        let status = Status::from(Error::FileExists {
            path: "src/a.py".into(),
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        assert!(
            status.message().contains("src/a.py"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn per_user_caps_are_failed_precondition_naming_the_cap_and_its_value() {
        let status = Status::from(Error::TooManyProjects { limit: 7 });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("maximum of 7 projects")
                && status.message().contains("PROJECT_MAX_PROJECTS_PER_USER"),
            "{}",
            status.message()
        );
        let status = Status::from(Error::UserStorageFull {
            limit: 1000,
            would_be: 1200,
        });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains("limit of 1000 bytes")
                && status.message().contains("PROJECT_MAX_USER_BYTES")
                && status.message().contains("1200 bytes"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn conflict_is_aborted_with_versions() {
        let status = Status::from(Error::VersionConflict {
            expected: 1,
            current: 3,
        });
        assert_eq!(status.code(), Code::Aborted);
        assert!(
            status
                .message()
                .starts_with("version conflict: expected 1, current 3")
        );
    }
}
