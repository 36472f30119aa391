//! The one error type of ai-service and its mapping to gRPC status codes, which `ai.proto`
//! documents for the gateway.

use std::time::Duration;

use service_runtime::invalid::Violations;
use tonic::Status;
use tonic::metadata::MetadataValue;

/// Result of ai-service operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Metadata key naming the provider-side cause of a failure.
pub const UPSTREAM_ERROR: &str = "x-upstream-error";
/// Metadata key naming a service-side condition (`not-configured`, `budget`).
pub const AI_ERROR: &str = "x-ai-error";
/// Metadata key with a retry hint in whole seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// Everything that can go wrong in ai-service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is invalid; one violation per field, with camelCase field names.
    #[error(transparent)]
    Invalid(Violations),
    /// No provider is configured.
    #[error(
        "no AI provider is configured: set AI_PROVIDER=anthropic with ANTHROPIC_API_KEY, or \
         AI_PROVIDER=openai with OPENAI_API_KEY and/or OPENAI_BASE_URL (Ollama, llama.cpp, vLLM), \
         and optionally AI_MODEL"
    )]
    NotConfigured,
    /// The caller's monthly token budget cannot cover the most this call may cost.
    #[error(
        "monthly AI token budget used up: {used} of {budget} tokens spent this month and {held} \
         held by calls in progress, and this call may use up to {needed}; {}",
        if used.saturating_add(*needed) <= *budget {
            "try again when the calls in progress end".to_string()
        } else {
            format!("the budget resets at {resets_at}")
        }
    )]
    BudgetExhausted {
        /// Tokens allowed per month.
        budget: u64,
        /// Tokens spent this month.
        used: u64,
        /// Tokens held by the user's calls in progress.
        held: u64,
        /// The most this call may cost (prompt bound plus output cap).
        needed: u64,
        /// RFC 3339 time of the reset.
        resets_at: String,
        /// Time until then.
        retry_after: Duration,
    },
    /// The provider rejected our credentials (401/403). Never carries the key.
    #[error(
        "the AI provider rejected the service's credentials (HTTP {status}); an operator must \
         check the configured API key"
    )]
    ProviderCredentials {
        /// HTTP status from the provider.
        status: u16,
    },
    /// The provider is overloaded, rate limiting us or unreachable, and retries are exhausted.
    #[error("the AI provider is unavailable ({reason}); try again in {}s", retry_after.as_secs().max(1))]
    ProviderUnavailable {
        /// Short cause, e.g. "HTTP 529 overloaded_error" or "connection failed".
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// The provider account has no quota left (429 `insufficient_quota`).
    #[error("the AI provider account has run out of quota; an operator must top it up")]
    ProviderQuota,
    /// The provider did not answer in time, retries included.
    #[error("the AI provider did not answer in time ({0})")]
    ProviderTimeout(&'static str),
    /// The provider refused the request as malformed (400, 404, 413, ...).
    #[error("the AI provider refused the request (HTTP {status}: {kind})")]
    ProviderRejected {
        /// HTTP status.
        status: u16,
        /// Provider error type, e.g. `invalid_request_error`.
        kind: String,
    },
    /// The provider answered something we cannot read.
    #[error("the AI provider sent an unreadable response: {0}")]
    ProviderProtocol(String),
    /// Our own failure (database, ...); logged with its cause chain, opaque to the caller.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// An invalid-argument error for one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        let mut violations = Violations::new();
        violations.push(field, description);
        Self::Invalid(violations)
    }

    /// The `kind` vocabulary shared by `x-upstream-error` and stream error events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotConfigured => "not-configured",
            Self::BudgetExhausted { .. } => "budget",
            Self::ProviderCredentials { .. } => "credentials",
            Self::ProviderUnavailable { .. } => "overloaded",
            Self::ProviderQuota => "quota",
            Self::ProviderTimeout(_) => "timeout",
            Self::ProviderRejected { .. } => "rejected",
            Self::ProviderProtocol(_) => "protocol",
            Self::Internal(_) => "internal",
        }
    }
}

fn with_meta(mut status: Status, key: &'static str, value: &str) -> Status {
    if let Ok(v) = MetadataValue::try_from(value) {
        status.metadata_mut().insert(key, v);
    }
    status
}

fn retry_seconds(d: Duration) -> String {
    // Round up: telling a client to come back before the provider allows it only earns a 429.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1).to_string()
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        let message = error.to_string();
        let kind = error.kind();
        match error {
            Error::Invalid(violations) => violations.into(),
            Error::NotConfigured => with_meta(Status::failed_precondition(message), AI_ERROR, kind),
            Error::BudgetExhausted { retry_after, .. } => {
                let status = with_meta(Status::resource_exhausted(message), AI_ERROR, kind);
                with_meta(status, RETRY_AFTER, &retry_seconds(retry_after))
            }
            Error::ProviderUnavailable { retry_after, .. } => {
                let status = with_meta(Status::unavailable(message), UPSTREAM_ERROR, kind);
                with_meta(status, RETRY_AFTER, &retry_seconds(retry_after))
            }
            Error::ProviderQuota => with_meta(Status::unavailable(message), UPSTREAM_ERROR, kind),
            Error::ProviderTimeout(_) => {
                with_meta(Status::deadline_exceeded(message), UPSTREAM_ERROR, kind)
            }
            Error::ProviderCredentials { .. }
            | Error::ProviderRejected { .. }
            | Error::ProviderProtocol(_) => {
                tracing::warn!(error = %message, "AI provider failure");
                with_meta(Status::internal(message), UPSTREAM_ERROR, kind)
            }
            Error::Internal(e) => service_runtime::grpc::internal(e),
        }
    }
}
