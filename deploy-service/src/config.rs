//! Configuration of deploy-service, read once from the environment.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_runtime::config::{ConfigError, listen_addr, optional, parse_or};
use service_runtime::identity::VerifyingKeys;
use service_runtime::retry;

use crate::model::Provider;
use crate::secrets::Keyring;

/// Default Vercel REST API.
pub const DEFAULT_VERCEL_API_URL: &str = "https://api.vercel.com";
/// Default Netlify REST API.
pub const DEFAULT_NETLIFY_API_URL: &str = "https://api.netlify.com/api/v1";
/// Default Railway public GraphQL API.
pub const DEFAULT_RAILWAY_API_URL: &str = "https://backboard.railway.com/graphql/v2";

/// Vercel endpoint and the operator's own account.
#[derive(Clone)]
pub struct VercelConfig {
    /// Base URL (`VERCEL_API_URL`).
    pub api_url: String,
    /// The operator's access token (`VERCEL_TOKEN`), used for users without a connection only
    /// when `DEPLOY_PLATFORM_ACCOUNTS` names `vercel`.
    pub token: Option<SecretString>,
    /// Team to act for (`VERCEL_TEAM_ID`), sent as `?teamId=` on every call.
    pub team_id: Option<String>,
}

/// Netlify endpoint and the operator's own account.
#[derive(Clone)]
pub struct NetlifyConfig {
    /// Base URL including `/api/v1` (`NETLIFY_API_URL`).
    pub api_url: String,
    /// The operator's personal access token (`NETLIFY_AUTH_TOKEN`), used for users without a
    /// connection only when `DEPLOY_PLATFORM_ACCOUNTS` names `netlify`.
    pub token: Option<SecretString>,
}

/// Railway endpoint. Railway deploys always go to the user's own connection: there is no
/// operator account for Railway.
#[derive(Debug, Clone)]
pub struct RailwayConfig {
    /// GraphQL endpoint (`RAILWAY_API_URL`); the tarball upload (`/project/…/up`) is on the same
    /// host.
    pub api_url: String,
}

/// How provider calls are retried: these settings of the shared [`retry::RetryPolicy`] (full
/// jitter, no total deadline), plus the timeout of each request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (`DEPLOY_PROVIDER_ATTEMPTS`, default 4).
    pub attempts: u32,
    /// First back-off, doubled per attempt with jitter (`DEPLOY_PROVIDER_BACKOFF_MS`, 500).
    pub initial_backoff: Duration,
    /// Longest back-off between attempts (8 s).
    pub max_backoff: Duration,
    /// Longest wait honoured for a rate limit's reset before giving up on the call (60 s).
    pub max_rate_limit_wait: Duration,
    /// Timeout of one HTTP request (`DEPLOY_PROVIDER_TIMEOUT_SECS`, default 60).
    pub request_timeout: Duration,
}

impl From<RetryPolicy> for retry::RetryPolicy {
    fn from(policy: RetryPolicy) -> Self {
        Self {
            max_attempts: policy.attempts,
            initial_backoff: policy.initial_backoff,
            max_backoff: policy.max_backoff,
            jitter: retry::Jitter::Full,
            deadline: None,
            max_retry_after: Some(policy.max_rate_limit_wait),
        }
    }
}

/// How the background poller follows deployments.
#[derive(Debug, Clone, Copy)]
pub struct PollerConfig {
    /// How often the poller looks for due deployments when nothing wakes it (250 ms).
    pub tick: Duration,
    /// First interval between two status reads of one deployment (`DEPLOY_POLL_MIN_MS`, 1000).
    pub min_interval: Duration,
    /// Longest interval between two status reads, reached by backing off (`DEPLOY_POLL_MAX_MS`,
    /// 15000).
    pub max_interval: Duration,
    /// How long a claimed deployment stays leased to this replica (`DEPLOY_LEASE_SECS`, 60);
    /// another replica takes over a deployment whose lease has run out.
    pub lease: Duration,
    /// Deployments worked on at once by this replica (`DEPLOY_MAX_ACTIVE`, 2000).
    pub max_concurrent: usize,
    /// Attempts at a step that fails for a transient reason (project-service down) before the
    /// deployment is marked `error` (10).
    pub step_attempts: i64,
    /// Overall deadline of one deployment from its creation (`DEPLOY_MAX_BUILD_SECS`, 1800):
    /// past it the deployment ends in `error` ("timed out at the provider") and its event
    /// streams close.
    pub max_build: Duration,
}

impl PollerConfig {
    /// How a step that fails for a transient reason is retried: `step_attempts` attempts,
    /// `min_interval × 2^failures` apart up to `max_interval`, without jitter so that the time a
    /// deployment survives an outage stays as configured (the waits are kept in the table, not
    /// slept).
    pub fn step_retry(&self) -> retry::RetryPolicy {
        retry::RetryPolicy {
            max_attempts: u32::try_from(self.step_attempts.max(1)).unwrap_or(u32::MAX),
            initial_backoff: self.min_interval.saturating_mul(2),
            max_backoff: self.max_interval,
            jitter: retry::Jitter::None,
            deadline: None,
            max_retry_after: None,
        }
    }
}

/// Configuration of deploy-service.
#[derive(Clone)]
pub struct Config {
    /// Where to listen (`DEPLOY_LISTEN_ADDR`, default `0.0.0.0:50052`).
    pub listen_addr: SocketAddr,
    /// `sqlite://…` or `postgres://…` (`DATABASE_URL`, default SQLite file `deploy.db` under
    /// `DATA_DIR`, itself defaulting to `./data`). May hold a password: a secret.
    pub database_url: SecretString,
    /// Connection pool size (`DEPLOY_DB_MAX_CONNECTIONS`, default 10).
    pub db_max_connections: u32,
    /// project-service, where the files come from (`PROJECT_SERVICE_URL`, default
    /// `http://127.0.0.1:50053`).
    pub project_service_url: String,
    /// Vercel.
    pub vercel: VercelConfig,
    /// Netlify.
    pub netlify: NetlifyConfig,
    /// Railway.
    pub railway: RailwayConfig,
    /// Providers whose operator account (the tokens above) deploys for users who have no
    /// connection of their own (`DEPLOY_PLATFORM_ACCOUNTS=vercel,netlify`; default none; never
    /// Railway).
    pub platform_accounts: Vec<Provider>,
    /// Key sealing users' provider tokens (`SECRETS_KEY`, 32 bytes in base64). Required by
    /// [`crate::run`]; [`Config::with_database_url`] draws a random one.
    pub secrets_key: Option<SecretString>,
    /// The key before the last rotation (`SECRETS_KEY_PREVIOUS`): rows sealed with it still
    /// open, and are resealed with `SECRETS_KEY` at start.
    pub secrets_key_previous: Option<SecretString>,
    /// Retries of provider calls.
    pub retry: RetryPolicy,
    /// The poller.
    pub poller: PollerConfig,
    /// Name of this replica in row leases (`DEPLOY_REPLICA_ID`, default host name plus a random
    /// suffix, so restarts never inherit a dead replica's leases by accident).
    pub replica_id: String,
    /// The gateway's public key(s) that every call's assertion must verify with
    /// (`IDENTITY_PUBLIC_KEY`; comma-separated during a key rotation). Required by `run`.
    pub caller_keys: Option<VerifyingKeys>,
}

impl Config {
    /// Reads the configuration from the environment; a malformed value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::with_database_url(String::new());
        config.database_url = service_runtime::db::url_from_env("deploy.db");
        config.listen_addr = listen_addr("DEPLOY_LISTEN_ADDR", 50052)?;
        config.db_max_connections = parse_or("DEPLOY_DB_MAX_CONNECTIONS", 10)?;
        config.project_service_url = url_var("PROJECT_SERVICE_URL", "http://127.0.0.1:50053")?;
        config.vercel = VercelConfig {
            api_url: url_var("VERCEL_API_URL", DEFAULT_VERCEL_API_URL)?,
            token: secret("VERCEL_TOKEN"),
            team_id: optional("VERCEL_TEAM_ID"),
        };
        config.netlify = NetlifyConfig {
            api_url: url_var("NETLIFY_API_URL", DEFAULT_NETLIFY_API_URL)?,
            token: secret("NETLIFY_AUTH_TOKEN"),
        };
        config.railway = RailwayConfig {
            api_url: url_var("RAILWAY_API_URL", DEFAULT_RAILWAY_API_URL)?,
        };
        config.platform_accounts = platform_accounts(&optional("DEPLOY_PLATFORM_ACCOUNTS"))?;
        for provider in &config.platform_accounts {
            let (name, token) = match provider {
                Provider::Vercel => ("VERCEL_TOKEN", &config.vercel.token),
                _ => ("NETLIFY_AUTH_TOKEN", &config.netlify.token),
            };
            if token.is_none() {
                return Err(ConfigError::new(
                    name,
                    format!("DEPLOY_PLATFORM_ACCOUNTS names {provider}: set its token"),
                ));
            }
        }
        config.secrets_key = secret("SECRETS_KEY");
        config.secrets_key_previous = secret("SECRETS_KEY_PREVIOUS");
        for (name, key) in [
            ("SECRETS_KEY", &config.secrets_key),
            ("SECRETS_KEY_PREVIOUS", &config.secrets_key_previous),
        ] {
            if let Some(key) = key {
                Keyring::new(key, None).map_err(|e| ConfigError::new(name, e.to_string()))?;
            }
        }
        config.retry.attempts = at_least_one("DEPLOY_PROVIDER_ATTEMPTS", 4)?;
        config.retry.initial_backoff =
            Duration::from_millis(parse_or("DEPLOY_PROVIDER_BACKOFF_MS", 500)?);
        config.retry.request_timeout =
            Duration::from_secs(at_least_one("DEPLOY_PROVIDER_TIMEOUT_SECS", 60)?.into());
        config.poller.min_interval =
            Duration::from_millis(at_least_one("DEPLOY_POLL_MIN_MS", 1000)?.into());
        config.poller.max_interval =
            Duration::from_millis(at_least_one("DEPLOY_POLL_MAX_MS", 15_000)?.into());
        config.poller.lease = Duration::from_secs(at_least_one("DEPLOY_LEASE_SECS", 60)?.into());
        config.poller.max_concurrent = at_least_one("DEPLOY_MAX_ACTIVE", 2000)? as usize;
        config.poller.max_build =
            Duration::from_secs(at_least_one("DEPLOY_MAX_BUILD_SECS", 1800)?.into());
        if let Some(id) = optional("DEPLOY_REPLICA_ID") {
            config.replica_id = id;
        }
        config.caller_keys = VerifyingKeys::from_env()?;
        Ok(config)
    }

    /// Defaults for everything but the database, with no provider credentials, without reading
    /// the environment; tests and the all-in-one binary start from this and set what they need.
    pub fn with_database_url(database_url: String) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 50052)),
            database_url: SecretString::from(database_url),
            db_max_connections: 10,
            project_service_url: "http://127.0.0.1:50053".to_string(),
            vercel: VercelConfig {
                api_url: DEFAULT_VERCEL_API_URL.to_string(),
                token: None,
                team_id: None,
            },
            netlify: NetlifyConfig {
                api_url: DEFAULT_NETLIFY_API_URL.to_string(),
                token: None,
            },
            railway: RailwayConfig {
                api_url: DEFAULT_RAILWAY_API_URL.to_string(),
            },
            platform_accounts: Vec::new(),
            secrets_key: Some(Keyring::generate_key()),
            secrets_key_previous: None,
            retry: RetryPolicy {
                attempts: 4,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(8),
                max_rate_limit_wait: Duration::from_secs(60),
                request_timeout: Duration::from_secs(60),
            },
            poller: PollerConfig {
                tick: Duration::from_millis(250),
                min_interval: Duration::from_secs(1),
                max_interval: Duration::from_secs(15),
                lease: Duration::from_secs(60),
                max_concurrent: 2000,
                step_attempts: 10,
                max_build: Duration::from_secs(1800),
            },
            replica_id: default_replica_id(),
            caller_keys: None,
        }
    }
}

/// `DEPLOY_PLATFORM_ACCOUNTS`: a comma-separated list of `vercel` and `netlify`.
fn platform_accounts(raw: &Option<String>) -> Result<Vec<Provider>, ConfigError> {
    const NAME: &str = "DEPLOY_PLATFORM_ACCOUNTS";
    let mut providers = Vec::new();
    for part in raw.iter().flat_map(|r| r.split(',')).map(str::trim) {
        if part.is_empty() || part.eq_ignore_ascii_case("none") {
            continue;
        }
        let provider = Provider::parse(part).map_err(|e| ConfigError::new(NAME, e.message))?;
        if provider == Provider::Railway {
            return Err(ConfigError::new(
                NAME,
                "Railway deploys always go to the user's own connection; remove railway",
            ));
        }
        if !providers.contains(&provider) {
            providers.push(provider);
        }
    }
    Ok(providers)
}

/// A secret variable; blank counts as unset.
fn secret(name: &str) -> Option<SecretString> {
    optional(name).map(SecretString::from)
}

fn url_var(name: &str, default: &str) -> Result<String, ConfigError> {
    let value = optional(name).unwrap_or_else(|| default.to_string());
    let parsed = reqwest::Url::parse(&value)
        .map_err(|e| ConfigError::new(name, format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ConfigError::new(name, "must be an http:// or https:// URL"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn at_least_one(name: &str, default: u32) -> Result<u32, ConfigError> {
    let value: u32 = parse_or(name, default)?;
    if value == 0 {
        return Err(ConfigError::new(name, "must be at least 1"));
    }
    Ok(value)
}

fn default_replica_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "deploy".to_string());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// `set` or `unset`, never the value.
fn shown(secret: &Option<SecretString>) -> &'static str {
    if secret.is_some() { "set" } else { "unset" }
}

impl fmt::Debug for VercelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VercelConfig")
            .field("api_url", &self.api_url)
            .field("token", &shown(&self.token))
            .field("team_id", &self.team_id)
            .finish()
    }
}

impl fmt::Debug for NetlifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetlifyConfig")
            .field("api_url", &self.api_url)
            .field("token", &shown(&self.token))
            .finish()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_url", &self.database_url)
            .field("db_max_connections", &self.db_max_connections)
            .field("project_service_url", &self.project_service_url)
            .field("vercel", &self.vercel)
            .field("netlify", &self.netlify)
            .field("railway", &self.railway)
            .field("platform_accounts", &self.platform_accounts)
            .field("secrets_key", &shown(&self.secrets_key))
            .field("secrets_key_previous", &shown(&self.secrets_key_previous))
            .field("retry", &self.retry)
            .field("poller", &self.poller)
            .field("replica_id", &self.replica_id)
            .field("caller_keys", &self.caller_keys)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn platform_accounts_never_include_railway() {
        assert!(platform_accounts(&None).unwrap().is_empty());
        assert_eq!(
            platform_accounts(&Some("vercel, Netlify,vercel".into())).unwrap(),
            [Provider::Vercel, Provider::Netlify]
        );
        assert!(platform_accounts(&Some("railway".into())).is_err());
        assert!(platform_accounts(&Some("heroku".into())).is_err());
    }

    #[test]
    fn debug_hides_tokens_and_database_credentials() {
        let mut config = Config::with_database_url("postgres://u:hunter2@db/x".to_string());
        config.vercel.token = Some(SecretString::from("vercel-secret-token"));
        config.netlify.token = Some(SecretString::from("netlify-secret-token"));
        let key = config.secrets_key.clone().unwrap();
        let shown = format!("{config:?}");
        for secret in [
            "hunter2",
            "vercel-secret",
            "netlify-secret",
            key.expose_secret(),
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("token: \"set\""), "{shown}");
    }
}
