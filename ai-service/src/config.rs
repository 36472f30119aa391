//! Configuration of ai-service, read once from the environment ([`Config::from_env`]) or built in
//! code ([`Config::new`] plus the pub fields), which is what the tests do.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_runtime::config::{ConfigError, listen_addr, optional, parse_optional, parse_or};
use service_runtime::identity::VerifyingKeys;
use service_runtime::redis_client::RedisTimeouts;
use service_runtime::redis_endpoint::RedisEndpoint;
use service_runtime::retry;

/// Configuration of ai-service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`AI_LISTEN_ADDR`, default `0.0.0.0:50051`).
    pub listen_addr: SocketAddr,
    /// The usage ledger database: `DATABASE_URL`, or SQLite `ai.db` under `DATA_DIR` (default
    /// `./data`). Secret because a PostgreSQL URL may hold a password.
    pub database_url: SecretString,
    /// Redis for the prompt cache (`REDIS_URL`, and `REDIS_CA_FILE` for `rediss://`); the cache
    /// stays in memory when unset.
    pub redis_url: Option<RedisEndpoint>,
    /// The AI provider; `None` keeps the service up but answers AI calls with
    /// `FAILED_PRECONDITION`.
    pub provider: Option<ProviderConfig>,
    /// Tokens (input + output) each user may spend per UTC calendar month
    /// (`AI_MONTHLY_TOKEN_BUDGET`); unlimited when `None`.
    pub monthly_token_budget: Option<u64>,
    /// Prompt cache settings.
    pub cache: CacheConfig,
    /// Input size limits.
    pub limits: Limits,
    /// The gateway's public key(s) that every call's assertion must verify with
    /// (`IDENTITY_PUBLIC_KEY`; comma-separated during a key rotation). Required by `run`.
    pub caller_keys: Option<VerifyingKeys>,
}

impl Config {
    /// A configuration with defaults everywhere, no provider, and the ledger at `database_url`.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            database_url: SecretString::from(database_url.into()),
            redis_url: None,
            provider: None,
            monthly_token_budget: None,
            cache: CacheConfig::default(),
            limits: Limits::default(),
            caller_keys: None,
        }
    }

    /// Reads the configuration from the environment; a bad value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::new(String::new());
        config.database_url = service_runtime::db::url_from_env("ai.db");
        config.listen_addr = listen_addr("AI_LISTEN_ADDR", 50051)?;
        config.redis_url = RedisEndpoint::from_env()?;
        config.provider = ProviderConfig::from_env()?;
        config.monthly_token_budget = parse_optional("AI_MONTHLY_TOKEN_BUDGET")?;
        config.cache.ttl =
            Duration::from_secs(parse_or("AI_CACHE_TTL_SECS", config.cache.ttl.as_secs())?);
        config.cache.max_entries = parse_or("AI_CACHE_MAX_ENTRIES", config.cache.max_entries)?;
        config.cache.scope = match optional("AI_CACHE_SCOPE").map(|v| v.to_ascii_lowercase()) {
            None => CacheScope::default(),
            Some(v) if v == "user" => CacheScope::User,
            Some(v) if v == "global" => CacheScope::Global,
            Some(v) => {
                return Err(ConfigError::new(
                    "AI_CACHE_SCOPE",
                    format!("expected user or global, got {v:?}"),
                ));
            }
        };
        config.caller_keys = VerifyingKeys::from_env()?;
        Ok(config)
    }
}

/// Which wire protocol the provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Anthropic Messages API (`POST {base}/v1/messages`).
    Anthropic,
    /// OpenAI-compatible chat completions (`POST {base}/v1/chat/completions`): OpenAI, Ollama,
    /// llama.cpp, vLLM.
    OpenAi,
}

impl ProviderKind {
    /// Name used in logs and cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anthropic => "anthropic",
            Self::OpenAi => "openai",
        }
    }
}

/// The AI provider and how to talk to it.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Wire protocol.
    pub kind: ProviderKind,
    /// Base URL without the `/v1/...` path (a trailing `/v1` is tolerated).
    pub base_url: String,
    /// API key; local OpenAI-compatible servers need none.
    pub api_key: Option<SecretString>,
    /// Model name sent to the provider (`AI_MODEL`).
    pub model: String,
    /// Timeouts of each provider call.
    pub timeouts: Timeouts,
    /// Retry policy for transient provider failures.
    pub retry: RetryPolicy,
}

/// Default Anthropic model when `AI_MODEL` is unset.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";
/// Default OpenAI model when `AI_MODEL` is unset.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";

impl ProviderConfig {
    /// Anthropic at `base_url` with `api_key` and the default model, timeouts and retries.
    pub fn anthropic(base_url: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            kind: ProviderKind::Anthropic,
            base_url: base_url.into(),
            api_key: Some(SecretString::from(api_key.into())),
            model: DEFAULT_ANTHROPIC_MODEL.to_string(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// An OpenAI-compatible server at `base_url`, with an API key when it needs one.
    pub fn openai(base_url: impl Into<String>, api_key: Option<String>) -> Self {
        Self {
            kind: ProviderKind::OpenAi,
            base_url: base_url.into(),
            api_key: api_key.map(SecretString::from),
            model: DEFAULT_OPENAI_MODEL.to_string(),
            timeouts: Timeouts::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Reads `AI_PROVIDER` and the variables of the chosen provider. Without `AI_PROVIDER`, the
    /// provider is guessed from which key or base URL is set; with none, there is no provider.
    fn from_env() -> Result<Option<Self>, ConfigError> {
        let anthropic_key = optional("ANTHROPIC_API_KEY");
        let openai_key = optional("OPENAI_API_KEY");
        let openai_base = optional("OPENAI_BASE_URL");
        let kind = match optional("AI_PROVIDER").map(|v| v.to_ascii_lowercase()) {
            Some(v) if v == "anthropic" => Some(ProviderKind::Anthropic),
            Some(v) if v == "openai" => Some(ProviderKind::OpenAi),
            Some(v) if v == "none" => None,
            Some(v) => {
                return Err(ConfigError::new(
                    "AI_PROVIDER",
                    format!("expected anthropic, openai or none, got {v:?}"),
                ));
            }
            None if anthropic_key.is_some() => Some(ProviderKind::Anthropic),
            None if openai_key.is_some() || openai_base.is_some() => Some(ProviderKind::OpenAi),
            None => None,
        };
        let Some(kind) = kind else { return Ok(None) };
        let mut provider = match kind {
            ProviderKind::Anthropic => {
                let key = anthropic_key.ok_or_else(|| {
                    ConfigError::new("ANTHROPIC_API_KEY", "required when AI_PROVIDER=anthropic")
                })?;
                let base = optional("ANTHROPIC_BASE_URL")
                    .unwrap_or_else(|| "https://api.anthropic.com".to_string());
                Self::anthropic(base, key)
            }
            ProviderKind::OpenAi => {
                let base = openai_base.unwrap_or_else(|| "https://api.openai.com".to_string());
                Self::openai(base, openai_key)
            }
        };
        if !(provider.base_url.starts_with("http://") || provider.base_url.starts_with("https://"))
        {
            let name = match kind {
                ProviderKind::Anthropic => "ANTHROPIC_BASE_URL",
                ProviderKind::OpenAi => "OPENAI_BASE_URL",
            };
            return Err(ConfigError::new(
                name,
                "expected an http:// or https:// URL",
            ));
        }
        if let Some(model) = optional("AI_MODEL") {
            provider.model = model;
        }
        let t = &mut provider.timeouts;
        t.connect = millis("AI_CONNECT_TIMEOUT_MS", t.connect)?;
        t.first_byte = millis("AI_FIRST_BYTE_TIMEOUT_MS", t.first_byte)?;
        t.total = millis("AI_REQUEST_TIMEOUT_MS", t.total)?;
        let r = &mut provider.retry;
        r.max_retries = parse_or("AI_MAX_RETRIES", r.max_retries)?;
        r.max_elapsed = millis("AI_RETRY_MAX_ELAPSED_MS", r.max_elapsed)?;
        Ok(Some(provider))
    }
}

fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(parse_or(
        name,
        u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
    )?))
}

/// Timeouts of one provider call.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing the TCP/TLS connection (`AI_CONNECT_TIMEOUT_MS`, default 5 s).
    pub connect: Duration,
    /// Until the response headers arrive on a streaming call, which a healthy provider sends
    /// at once (`AI_FIRST_BYTE_TIMEOUT_MS`, default 30 s). Unary calls only get headers when the
    /// answer is complete, so for them only `total` applies.
    pub first_byte: Duration,
    /// The whole call, body included (`AI_REQUEST_TIMEOUT_MS`, default 300 s).
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            first_byte: Duration::from_secs(30),
            total: Duration::from_secs(300),
        }
    }
}

/// Retries of transient provider failures (408, 409, 429 except quota, 5xx, 529, connection
/// errors, timeouts): these settings of the shared [`retry::RetryPolicy`], with its exponential
/// back-off and full jitter, honouring the provider's `retry-after-ms`, `retry-after` (seconds or
/// HTTP date) or `x-ratelimit-reset` when the wait ends within `max_elapsed`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt (`AI_MAX_RETRIES`, default 2).
    pub max_retries: u32,
    /// First backoff (default 500 ms), doubled each retry.
    pub initial_backoff: Duration,
    /// Largest backoff (default 8 s).
    pub max_backoff: Duration,
    /// No retry starts whose wait would end later than this after the first attempt began
    /// (`AI_RETRY_MAX_ELAPSED_MS`, default 60 s); a provider asking for a longer wait ends the
    /// call with its hint.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl From<RetryPolicy> for retry::RetryPolicy {
    fn from(policy: RetryPolicy) -> Self {
        Self {
            max_attempts: policy.max_retries.saturating_add(1),
            initial_backoff: policy.initial_backoff,
            max_backoff: policy.max_backoff,
            jitter: retry::Jitter::Full,
            deadline: Some(policy.max_elapsed),
            max_retry_after: None,
        }
    }
}

/// Prompt cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// How long an answer stays reusable (`AI_CACHE_TTL_SECS`, default 3600; 0 disables the cache).
    pub ttl: Duration,
    /// Entries kept by the in-memory cache (`AI_CACHE_MAX_ENTRIES`, default 1000).
    pub max_entries: usize,
    /// Prefix of Redis keys, so that several deployments can share one Redis.
    pub redis_prefix: String,
    /// Whose requests share answers (`AI_CACHE_SCOPE`, default `user`).
    pub scope: CacheScope,
    /// Waits on Redis: connect and response timeouts (1 s each, like the gateway's limiter),
    /// and how long to go without Redis after it failed (5 s).
    pub redis_timeouts: RedisTimeouts,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            max_entries: 1000,
            redis_prefix: "autocrea:ai:cache:v1:".to_string(),
            scope: CacheScope::default(),
            redis_timeouts: RedisTimeouts::default(),
        }
    }
}

/// Whose requests the prompt cache answers from one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheScope {
    /// Each user's own requests only: nobody learns from a hit that another user sent the same
    /// prompt.
    #[default]
    User,
    /// Every user's: more hits, but a hit shows that someone asked the same before.
    Global,
}

impl CacheScope {
    /// Name in `AI_CACHE_SCOPE` and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Global => "global",
        }
    }
}

/// Input size limits, in characters.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Generate prompt.
    pub max_prompt_chars: usize,
    /// Code given to explain, fix or refactor.
    pub max_code_chars: usize,
    /// Error text given to fix.
    pub max_error_chars: usize,
    /// Refactor goals.
    pub max_goals_chars: usize,
    /// Framework name.
    pub max_framework_chars: usize,
    /// Completion prefix and suffix, each.
    pub max_completion_context_chars: usize,
    /// Chat messages per request.
    pub max_chat_messages: usize,
    /// One chat message.
    pub max_chat_message_chars: usize,
    /// All chat messages together.
    pub max_chat_total_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_prompt_chars: 10_000,
            max_code_chars: 60_000,
            max_error_chars: 10_000,
            max_goals_chars: 2_000,
            max_framework_chars: 100,
            max_completion_context_chars: 20_000,
            max_chat_messages: 50,
            max_chat_message_chars: 20_000,
            max_chat_total_chars: 100_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut config = Config::new("postgres://ai:db-password@db/ai");
        config.redis_url = Some(RedisEndpoint::new("redis://:redis-password@cache"));
        config.provider = Some(ProviderConfig::anthropic(
            "https://api.anthropic.com",
            "sk-ant-secret",
        ));
        let printed = format!("{config:?}");
        for secret in ["db-password", "redis-password", "sk-ant-secret"] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
    }
}
