//! How a failed provider call is read: which failures another attempt may mend (overloaded, rate
//! limited, timed out, connection lost) and which it cannot (credentials, quota, a refused
//! request), from the HTTP status, the error body's `type` and `code`, and `x-should-retry`.

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use service_runtime::retry::{Failed, retry_after};
use service_runtime::telemetry::record_http_failure;

use crate::error::Error;

/// A failed attempt: the error to report and whether another attempt may succeed.
pub(crate) type Failure = Failed<Error>;

/// The failure of an error `type` reported inside a stream after the HTTP 200.
pub(super) fn stream_error(kind: &str) -> Failure {
    match kind {
        "overloaded_error" | "api_error" | "rate_limit_error" | "timeout_error"
        | "server_error" => Failure::transient(
            Error::ProviderUnavailable {
                reason: kind.to_string(),
                retry_after: Duration::from_secs(1),
            },
            None,
        ),
        "authentication_error" | "permission_error" => {
            Failure::permanent(Error::ProviderCredentials { status: 200 })
        }
        other => Failure::permanent(Error::ProviderRejected {
            status: 200,
            kind: other.to_string(),
        }),
    }
}

/// A failed attempt without an answer, recorded on its span.
pub(super) fn attempt_failure(span: &tracing::Span, error: &reqwest::Error) -> Failure {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "connection_lost"
    };
    record_http_failure(span, kind);
    send_failure(error)
}

pub(super) fn send_failure(error: &reqwest::Error) -> Failure {
    // reqwest's message names the URL, never a header, so it is safe to log.
    tracing::warn!(error = %error, source = ?std::error::Error::source(error), "AI provider request failed");
    if error.is_timeout() {
        return Failure::transient(Error::ProviderTimeout("whole call took too long"), None);
    }
    let reason = if error.is_connect() {
        "cannot connect"
    } else {
        "connection lost"
    };
    Failure::transient(
        Error::ProviderUnavailable {
            reason: reason.into(),
            retry_after: Duration::from_secs(1),
        },
        None,
    )
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
}

/// Classifies a non-2xx answer. Both protocols put `error.type` (and OpenAI `error.code`) in the
/// body; the message is not kept because some providers echo part of the key in it.
pub(super) fn status_failure(status: u16, headers: &HeaderMap, body: &[u8]) -> Failure {
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let code = detail
        .code
        .as_ref()
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    let kind = detail.kind.unwrap_or_default();
    tracing::warn!(status, error_type = %kind, code = %code, "AI provider answered with an error");
    let should_retry = headers
        .get("x-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == "true");
    let quota = kind == "insufficient_quota" || code == "insufficient_quota";
    match status {
        401 | 403 => Failure::permanent(Error::ProviderCredentials { status }),
        429 if quota => Failure::permanent(Error::ProviderQuota),
        408 | 409 | 429 | 500.. if should_retry != Some(false) => {
            let label = if kind.is_empty() { "error" } else { &kind };
            Failure::transient(
                Error::ProviderUnavailable {
                    reason: format!("HTTP {status} {label}"),
                    retry_after: Duration::from_secs(1),
                },
                retry_after(headers),
            )
        }
        _ => Failure {
            error: Error::ProviderRejected {
                status,
                kind: if kind.is_empty() {
                    "error".into()
                } else {
                    kind
                },
            },
            retryable: should_retry == Some(true),
            retry_after: retry_after(headers),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_429_is_not_retried_but_rate_limit_429_is() {
        let quota =
            br#"{"error":{"message":"x","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert!(!status_failure(429, &HeaderMap::new(), quota).retryable);
        let limited =
            br#"{"error":{"message":"x","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert!(status_failure(429, &HeaderMap::new(), limited).retryable);
        assert!(status_failure(529, &HeaderMap::new(), b"").retryable);
        assert!(!status_failure(400, &HeaderMap::new(), b"").retryable);
        assert!(!status_failure(401, &HeaderMap::new(), b"").retryable);
    }
}
