//! Errors as RFC 9457 `application/problem+json`, with a stable `type`, a human `detail`, the
//! request id, and per-field `errors` for validation failures. Every error the gateway returns
//! goes through [`ApiError`]; gRPC statuses are mapped to HTTP in one place, [`ApiError::from_status`].

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tonic_types::StatusExt;

use crate::request_context;

/// Media type of error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, in the request's own (camelCase) naming.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// An error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after_secs: Option<u64>,
    challenge: bool,
    /// What went wrong inside, for the log only.
    cause: Option<Box<str>>,
}

/// The body of an error response, as documented in the OpenAPI document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// Stable identifier of the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong in this case and what to do about it.
    pub detail: String,
    /// The id of this request, also in the `x-request-id` header; quote it when reporting a problem.
    pub request_id: String,
    /// Invalid fields, for validation problems.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// A downstream's answer as the HTTP API reads it: the message, or the problem
/// [`ApiError::from_status`] makes of the failure, e.g.
/// `client.get_project(request(&caller, message)).await.answered(SERVICE)?`.
pub trait Answered<T> {
    /// The message `service` answered, or its failure as a problem.
    fn answered(self, service: &str) -> ApiResult<T>;
}

impl<T> Answered<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answered(self, service: &str) -> ApiResult<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| ApiError::from_status(&status, service))
    }
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            challenge: false,
            cause: None,
        }
    }

    /// 400: the request is malformed or a field is invalid.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
        )
    }

    /// 400 with per-field errors.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid request",
            detail,
        );
        error.errors = errors;
        error
    }

    /// 400 for one invalid field.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError {
            field: field.to_string(),
            message: message.into(),
        }])
    }

    /// 401 with a `WWW-Authenticate` challenge.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut error = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authentication required",
            detail,
        );
        error.challenge = true;
        error
    }

    /// 403: authenticated, but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 409: the request conflicts with the current state of what it addresses; the client can
    /// resolve the conflict and retry.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    /// 413: the body is larger than allowed.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Request body too large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 415: writes take JSON only.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "send the body as JSON with `Content-Type: application/json`",
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(group: &str, retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("the {group} rate limit is used up; retry after {retry_after_secs} s"),
        );
        error.retry_after_secs = Some(retry_after_secs.max(1));
        error
    }

    /// 503: a service behind the gateway cannot answer now.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            detail,
        );
        error.retry_after_secs = Some(retry_after_secs.max(1));
        error
    }

    /// 502: an upstream answered in a way we cannot pass on.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "Bad gateway",
            detail,
        )
    }

    /// 500 with an opaque message; the cause (with its chain, for `anyhow` errors) goes to the
    /// request log line, never to the client.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "an unexpected error occurred; quote the request id when reporting it",
        );
        let cause = format!("{cause:#}");
        // Outside a request's scope (a stream already answering) no request line will carry it.
        if request_context::current().is_none() {
            tracing::error!(error = cause, "internal error");
        }
        error.cause = Some(cause.into());
        error
    }

    /// An error of a kind one route group defines for itself (e.g. the AI provider's
    /// conditions), so that such refinements need not change [`ApiError::from_status`] for
    /// every service. `kind` becomes the last segment of the problem `type`.
    pub fn custom(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(status, kind, title, detail)
    }

    /// Adds a `Retry-After` of `secs` (at least 1).
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// [`ApiError::from_status`] with a route group's own reading of its service's statuses tried
    /// first (the AI service's error kinds in metadata, say); `refine` answers `None` for
    /// whatever the generic mapping should handle.
    pub fn from_status_with(
        status: &tonic::Status,
        service: &str,
        refine: fn(&tonic::Status) -> Option<ApiError>,
    ) -> Self {
        refine(status).unwrap_or_else(|| Self::from_status(status, service))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The invalid fields, for validation problems.
    pub fn field_errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// Maps a gRPC status from `service` to the HTTP error the client sees. The one place where
    /// gRPC codes become HTTP statuses.
    pub fn from_status(status: &tonic::Status, service: &str) -> Self {
        use tonic::Code;
        let message = status.message();
        let retry_after = status
            .metadata()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                let violations = status
                    .get_details_bad_request()
                    .map(|bad| bad.field_violations)
                    .unwrap_or_default();
                let renamed = violations.iter().any(|v| http_field(&v.field) != v.field);
                let errors: Vec<FieldError> = violations
                    .into_iter()
                    .map(|v| http_field_error(&v.field, v.description))
                    .collect();
                if errors.is_empty() {
                    Self::bad_request(message)
                } else {
                    // The service's own words, unless they name a field the client spells
                    // otherwise: then the field errors, in the client's words.
                    let detail = if !renamed {
                        message.to_string()
                    } else {
                        errors
                            .iter()
                            .map(|e| format!("invalid {}: {}", e.field, e.message))
                            .collect::<Vec<_>>()
                            .join("; ")
                    };
                    let mut error = Self::validation(errors);
                    error.detail = detail;
                    error
                }
            }
            Code::Unauthenticated => Self::unauthorized(message),
            Code::PermissionDenied => Self::forbidden(message),
            Code::NotFound => Self::not_found(message),
            Code::AlreadyExists | Code::Aborted => Self::conflict(message),
            Code::FailedPrecondition => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "failed-precondition",
                "Request cannot be carried out",
                message,
            ),
            Code::ResourceExhausted => {
                let mut error = Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "resource-exhausted",
                    "Too many requests",
                    message,
                );
                error.retry_after_secs = Some(retry_after.unwrap_or(1).max(1));
                error
            }
            Code::Unavailable => {
                tracing::warn!(service, grpc_message = message, "downstream unavailable");
                // A status the service sent itself (no local transport cause) says why it cannot
                // serve, e.g. "no Docker engine answers": pass that on. Transport failures keep
                // a generic message.
                let detail = if std::error::Error::source(status).is_none() && !message.is_empty() {
                    format!("{service} is unavailable: {message}")
                } else {
                    format!("{service} is unavailable right now; try again shortly")
                };
                Self::unavailable(detail, retry_after.unwrap_or(1))
            }
            // A stream reset by a service that went away (killed or restarted with the call in
            // flight) arrives as CANCELLED from the local transport: the service is unavailable,
            // not slow. A CANCELLED the service sent itself, or a deadline, is a timeout.
            Code::Cancelled if std::error::Error::source(status).is_some() => {
                tracing::warn!(service, grpc_message = message, "downstream call cut");
                Self::unavailable(
                    format!("{service} is unavailable right now; try again shortly"),
                    retry_after.unwrap_or(1),
                )
            }
            Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(service, grpc_message = message, "downstream timed out");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "Gateway timeout",
                    format!("{service} did not answer in time; try again shortly"),
                )
            }
            Code::Unimplemented => Self::new(
                StatusCode::NOT_IMPLEMENTED,
                "not-implemented",
                "Not implemented",
                format!("{service} does not offer this operation yet"),
            ),
            // A call cut short by a lost connection (the service crashed or restarted while
            // answering) fails here, on the client side, with the transport error as its source:
            // the service did not answer at all, so it is unavailable (503, try again), not failing.
            Code::Internal | Code::Unknown if std::error::Error::source(status).is_some() => {
                tracing::warn!(
                    service,
                    grpc_message = message,
                    "connection to downstream lost mid-call"
                );
                Self::unavailable(
                    format!(
                        "{service} is unavailable right now (the connection to it was lost); try again shortly"
                    ),
                    1,
                )
            }
            Code::Internal | Code::DataLoss | Code::Unknown | Code::Ok => Self::internal(
                format_args!("{service} answered {:?}: {message}", status.code()),
            ),
        }
    }

    fn body(&self) -> Problem {
        Problem {
            kind: format!("https://autocrea.dev/problems/{}", self.kind),
            title: self.title.to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            request_id: request_context::current().unwrap_or_default(),
            errors: self.errors.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.title,
            self.detail
        )
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(secs) = self.retry_after_secs {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.challenge
            && let Ok(value) = HeaderValue::from_str(&format!(
                "Bearer realm=\"autocrea\", error=\"invalid_token\", error_description=\"{}\"",
                self.detail.replace(['"', '\\'], "'")
            ))
        {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        let mut response = response.body(serde_json::to_vec(&self.body()).unwrap_or_default());
        if self.status.is_server_error() {
            let cause = self
                .cause
                .as_deref()
                .map_or_else(|| self.to_string(), str::to_string);
            response
                .extensions_mut()
                .insert(request_context::ErrorCause(cause));
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// The HTTP API's name of a service's field: services name paging and retry fields as gRPC does
/// (`pageSize`, `pageToken`, `idempotencyKey`); clients send `limit`, `cursor` and the
/// `Idempotency-Key` header.
fn http_field(field: &str) -> &str {
    match field {
        "pageSize" => "limit",
        "pageToken" => "cursor",
        "idempotencyKey" => "Idempotency-Key",
        other => other,
    }
}

/// A violation of the service's `field`, named and (for cursors) worded as the HTTP API does.
fn http_field_error(field: &str, message: String) -> FieldError {
    let field = http_field(field);
    let message = if field == "cursor" {
        "is not a cursor this API gave you for this listing (it is malformed, was changed, or \
         belongs to another user); pass `nextCursor` of the previous page unchanged, or leave it \
         out for the first page"
            .to_string()
    } else {
        message
    };
    FieldError {
        field: field.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tonic::{Code, Status};

    use super::*;

    #[test]
    fn a_call_cut_by_a_vanished_service_is_503_and_a_deadline_504() {
        let mut cut = Status::new(Code::Cancelled, "h2 protocol error: stream reset");
        cut.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert_eq!(
            ApiError::from_status(&cut, "project-service").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let sent = Status::new(Code::Cancelled, "the service gave up");
        assert_eq!(
            ApiError::from_status(&sent, "project-service").status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        let deadline = Status::new(Code::DeadlineExceeded, "timeout expired");
        assert_eq!(
            ApiError::from_status(&deadline, "project-service").status(),
            StatusCode::GATEWAY_TIMEOUT
        );
    }

    #[test]
    fn service_field_names_become_the_http_api_s() {
        use tonic_types::{ErrorDetails, StatusExt};
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid pageToken: garbage",
            ErrorDetails::with_bad_request_violation("pageToken", "garbage"),
        );
        let error = ApiError::from_status(&status, "project-service");
        assert_eq!(error.field_errors()[0].field, "cursor");
        assert!(error.field_errors()[0].message.contains("nextCursor"));
        let status = Status::with_error_details(
            Code::InvalidArgument,
            "invalid idempotencyKey: too long",
            ErrorDetails::with_bad_request_violation("idempotencyKey", "too long"),
        );
        let error = ApiError::from_status(&status, "deploy-service");
        assert_eq!(error.field_errors()[0].field, "Idempotency-Key");
        assert_eq!(error.field_errors()[0].message, "too long");
    }
}
