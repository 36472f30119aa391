//! A request field that failed validation, and its gRPC status: INVALID_ARGUMENT with a
//! `BadRequest` field violation, which the gateway turns into a 400 problem naming the field.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A request field that failed validation: which field (camelCase, as the JSON API names it) and
/// what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {message}")]
pub struct Invalid {
    /// The field, as the gateway's JSON API names it (`name`, `path`, `pageToken`, …).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl Invalid {
    /// A violation of `field`.
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl From<Invalid> for Status {
    fn from(invalid: Invalid) -> Self {
        Status::with_error_details(
            Code::InvalidArgument,
            invalid.to_string(),
            ErrorDetails::with_bad_request_violation(invalid.field, invalid.message),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_one_field_violation() {
        let status = Status::from(Invalid::new("name", "must not be empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid name: must not be empty");
        let bad = status
            .get_details_bad_request()
            .expect("bad request details");
        assert_eq!(bad.field_violations.len(), 1);
        assert_eq!(bad.field_violations[0].field, "name");
        assert_eq!(bad.field_violations[0].description, "must not be empty");
    }
}
