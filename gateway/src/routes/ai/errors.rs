//! ai-service's failures as problems: its own and the provider's conditions, marked in metadata,
//! refine the gateway-wide mapping.

use super::*;

/// Maps a status from ai-service to the error the client sees. ai-service marks its own and the
/// provider's conditions with metadata (see `ai.proto`); those get specific problems here, and
/// everything else goes through the gateway-wide [`ApiError::from_status`].
pub fn ai_error(status: &tonic::Status) -> ApiError {
    ApiError::from_status_with(status, SERVICE, ai_detail)
}

/// What ai-service says about its failures beyond the gRPC code (`x-ai-error`, the provider's
/// `x-upstream-error` and `retry-after` in metadata), as problems of their own; `None` for the
/// rest, which the generic mapping handles.
fn ai_detail(status: &tonic::Status) -> Option<ApiError> {
    use tonic::Code;
    let meta = status.metadata();
    let ai = metadata(meta, "x-ai-error");
    let upstream = metadata(meta, "x-upstream-error");
    let retry_after = metadata(meta, "retry-after").and_then(|v| v.parse::<u64>().ok());
    let message = status.message();
    Some(match (status.code(), ai, upstream) {
        // ai-service names the variables to set; no Retry-After: waiting does not help.
        (Code::FailedPrecondition, Some("not-configured"), _) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-not-configured",
            "AI provider not configured",
            message,
        ),
        (Code::ResourceExhausted, Some("budget"), _) => ApiError::custom(
            StatusCode::TOO_MANY_REQUESTS,
            "ai-budget-exhausted",
            "Monthly AI token budget used up",
            message,
        )
        .with_retry_after(retry_after.unwrap_or(3600)),
        (Code::Unavailable, _, Some("overloaded")) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-provider-unavailable",
            "AI provider unavailable",
            message,
        )
        .with_retry_after(retry_after.unwrap_or(1)),
        (Code::Unavailable, _, Some("quota")) => ApiError::custom(
            StatusCode::SERVICE_UNAVAILABLE,
            "ai-provider-quota",
            "AI provider quota used up",
            message,
        ),
        (Code::DeadlineExceeded, _, Some("timeout")) => ApiError::custom(
            StatusCode::GATEWAY_TIMEOUT,
            "ai-provider-timeout",
            "AI provider timeout",
            message,
        ),
        // A fixed text rather than ai-service's message: whatever happens upstream, a key can
        // never reach the client through this answer.
        (Code::Internal, _, Some("credentials")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-credentials",
            "AI provider rejected our credentials",
            "the AI provider rejected the service's credentials; an operator must check the \
             configured API key",
        ),
        (Code::Internal, _, Some("rejected")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-rejected",
            "AI provider refused the request",
            message,
        ),
        (Code::Internal, _, Some("protocol")) => ApiError::custom(
            StatusCode::BAD_GATEWAY,
            "ai-provider-protocol",
            "AI provider answered unreadably",
            message,
        ),
        _ => return None,
    })
}
