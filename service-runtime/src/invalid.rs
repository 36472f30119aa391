//! Request fields that failed validation, and their gRPC status: INVALID_ARGUMENT with one
//! `BadRequest` field violation per field, which the gateway turns into a 400 problem naming them.
//! `Invalid` is one field found wrong (validation that stops at the first); `Violations` every
//! wrong field of a request at once.

use std::fmt;

use tonic::{Code, Status};
pub use tonic_types::FieldViolation;
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

/// Every wrong field of one request, each with what to fix (camelCase field names, as the JSON
/// API names them: `language`, `files[1].name`).
#[derive(Debug, Clone, Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    /// No violation yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` is wrong and what to fix.
    pub fn push(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Whether no field is wrong.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when no field is wrong, otherwise the violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid request: ")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", v.field, v.description)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

impl From<Invalid> for Violations {
    fn from(invalid: Invalid) -> Self {
        Self(vec![FieldViolation::new(invalid.field, invalid.message)])
    }
}

impl From<Violations> for Status {
    fn from(violations: Violations) -> Self {
        Status::with_error_details(
            Code::InvalidArgument,
            violations.to_string(),
            ErrorDetails::with_bad_request(violations.0),
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

    #[test]
    fn carries_every_field_violation_in_order() {
        let mut violations = Violations::new();
        assert!(violations.clone().into_result(()).is_ok());
        violations.push("language", "must be python, javascript or bash");
        violations.push("files[1].name", "must be a relative path");
        let status = Status::from(violations.clone().into_result(()).unwrap_err());
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: language: must be python, javascript or bash; files[1].name: must be a relative path"
        );
        let bad = status
            .get_details_bad_request()
            .expect("bad request details");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["language", "files[1].name"]);
        let one = Violations::from(Invalid::new("name", "must not be empty"));
        assert_eq!(one.to_string(), "invalid request: name: must not be empty");
    }
}
