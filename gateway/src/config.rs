//! Gateway configuration, read once from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use service_runtime::config::{ConfigError, flag, listen_addr, optional, parse_optional, parse_or};

pub use crate::limits::LimitsConfig;
use crate::limits::RedisFailureMode;

/// Everything the gateway needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`GATEWAY_LISTEN_ADDR`, default `0.0.0.0:8000`).
    pub listen_addr: SocketAddr,
    /// HTTP worker threads (`GATEWAY_WORKERS`, default: the number of CPUs).
    pub workers: usize,
    /// Downstream gRPC services.
    pub services: ServiceUrls,
    /// How gRPC calls to services time out.
    pub grpc: service_runtime::grpc::ClientOptions,
    /// How callers authenticate.
    pub auth: AuthConfig,
    /// Rate limits per route group.
    pub limits: LimitsConfig,
    /// Largest request body accepted (`MAX_BODY_BYTES`, default 5 MiB).
    pub max_body_bytes: usize,
    /// Requests slower than this are logged as warnings (`SLOW_REQUEST_MS`, default 1000).
    pub slow_request: Duration,
    /// The gateway's own database, holding API keys (`DATABASE_URL`, default SQLite
    /// `gateway.db` under `DATA_DIR`, default `./data`).
    pub database_url: SecretString,
    /// Connections in the database pool (`GATEWAY_DB_MAX_CONNECTIONS`, default 10).
    pub db_max_connections: u32,
    /// What browsers and proxies in front of the gateway see and send.
    pub edge: EdgeConfig,
    /// Event streams: write timeout and open streams per user (`SSE_*`).
    pub streams: crate::sse::StreamLimits,
    /// The Ed25519 private key that signs the caller assertions sent to the services
    /// (`IDENTITY_SIGNING_KEY`; the services verify with its public key). Required by `run`.
    pub signing_key: Option<service_runtime::identity::SigningKey>,
}

/// The browser-facing edge: cross-origin access, security headers, proxies in front, header
/// limits, and where the operations endpoints are served.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// Origins allowed to call the API from a browser (`CORS_ALLOWED_ORIGINS`, comma-separated
    /// exact origins such as `https://app.example.com`; empty: no cross-origin access). Cookie
    /// authentication on unsafe methods is accepted only from these origins.
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer (`CORS_MAX_AGE_SECS`, default 600).
    pub cors_max_age: Duration,
    /// `Strict-Transport-Security: max-age=…` on every response when set (`HSTS_MAX_AGE_SECS`;
    /// set it only when clients reach the gateway over TLS).
    pub hsts_max_age: Option<Duration>,
    /// Proxies whose forwarding header is believed (`TRUSTED_PROXIES`, comma-separated CIDRs or
    /// addresses; default none: the client is the peer address).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header the trusted proxies write (`FORWARDED_HEADER`, `x-forwarded-for` (default)
    /// or `forwarded`). Only that one is read, so a client cannot smuggle in the other.
    pub forwarded_header: crate::client_ip::ForwardedHeader,
    /// Largest total size of the request headers (`MAX_HEADER_BYTES`, default 16384); larger
    /// requests get 431.
    pub max_header_bytes: usize,
    /// Serve `/metrics` and `/ready` on this address instead of the public listener
    /// (`GATEWAY_METRICS_ADDR`; default unset: on the public listener).
    pub ops_addr: Option<SocketAddr>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            cors_max_age: Duration::from_secs(600),
            hsts_max_age: None,
            trusted_proxies: Vec::new(),
            forwarded_header: crate::client_ip::ForwardedHeader::default(),
            max_header_bytes: 16 * 1024,
            ops_addr: None,
        }
    }
}

impl EdgeConfig {
    /// Reads the edge variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        let defaults = Self::default();
        Ok(Self {
            allowed_origins: optional("CORS_ALLOWED_ORIGINS")
                .map(|v| parse_origins(&v))
                .transpose()
                .map_err(|e| ConfigError::new("CORS_ALLOWED_ORIGINS", e))?
                .unwrap_or_default(),
            cors_max_age: Duration::from_secs(parse_or(
                "CORS_MAX_AGE_SECS",
                defaults.cors_max_age.as_secs(),
            )?),
            hsts_max_age: parse_optional::<u64>("HSTS_MAX_AGE_SECS")?.map(Duration::from_secs),
            trusted_proxies: optional("TRUSTED_PROXIES")
                .map(|v| crate::client_ip::parse_networks(&v))
                .transpose()
                .map_err(|e| ConfigError::new("TRUSTED_PROXIES", e))?
                .unwrap_or_default(),
            forwarded_header: parse_or("FORWARDED_HEADER", defaults.forwarded_header)?,
            max_header_bytes: parse_or("MAX_HEADER_BYTES", defaults.max_header_bytes)?,
            ops_addr: parse_optional("GATEWAY_METRICS_ADDR")?,
        })
    }
}

/// Parses a comma-separated list of exact origins (`scheme://host[:port]`, no path). `*` is
/// refused: credentials (cookies) are allowed cross-origin, so the list must be explicit.
pub fn parse_origins(list: &str) -> Result<Vec<String>, String> {
    let mut origins = Vec::new();
    for raw in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if raw == "*" {
            return Err(
                "`*` is not allowed: credentials are accepted cross-origin, so list each origin \
                 (e.g. https://app.example.com)"
                    .into(),
            );
        }
        let origin = raw.to_ascii_lowercase();
        let Some((scheme, rest)) = origin.split_once("://") else {
            return Err(format!(
                "{raw:?} is not an origin: expected scheme://host[:port]"
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("{raw:?}: the scheme must be http or https"));
        }
        let valid_host = |h: &str| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
                })
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (rest, None),
        };
        if !valid_host(host) || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(format!(
                "{raw:?} is not an origin: expected scheme://host[:port] with no path or \
                 trailing slash"
            ));
        }
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// gRPC addresses of the services behind the gateway.
#[derive(Debug, Clone)]
pub struct ServiceUrls {
    /// `PROJECT_SERVICE_URL`, default `http://127.0.0.1:50053`.
    pub project: String,
    /// `AI_SERVICE_URL`, default `http://127.0.0.1:50051`.
    pub ai: String,
    /// `DEPLOY_SERVICE_URL`, default `http://127.0.0.1:50052`.
    pub deploy: String,
    /// `SANDBOX_SERVICE_URL`, default `http://127.0.0.1:50054`.
    pub sandbox: String,
}

/// How tokens are verified. At least one of `jwks_url` and `hs256_secret` must be set: a gateway
/// with no authentication configured refuses to start rather than run open.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// JWKS endpoint for RS256/ES256 session tokens, e.g. Clerk's
    /// `https://<frontend-api>/.well-known/jwks.json` (`AUTH_JWKS_URL`).
    pub jwks_url: Option<String>,
    /// Expected `iss` (`AUTH_ISSUER`); checked when set.
    pub issuer: Option<String>,
    /// Allowed `azp` values (`AUTH_AUTHORIZED_PARTIES`, comma-separated); when set, `azp` must be
    /// present and match one exactly.
    pub authorized_parties: Vec<String>,
    /// Expected `aud` (`AUTH_AUDIENCE`); checked when set.
    pub audience: Option<String>,
    /// Development tokens signed with HS256 and this secret (`AUTH_HS256_SECRET`, at least 32 bytes).
    pub hs256_secret: Option<SecretString>,
    /// Clock skew allowed on `exp`, `nbf` and `iat` (`AUTH_LEEWAY_SECS`, default 5).
    pub leeway: Duration,
    /// How long fetched keys are trusted (`AUTH_JWKS_CACHE_SECS`, default 300).
    pub jwks_cache_ttl: Duration,
    /// Least time between two key fetches caused by unknown `kid`s (`AUTH_JWKS_REFRESH_MIN_SECS`, default 10).
    pub jwks_min_refresh: Duration,
    /// Signing algorithms accepted for JWKS tokens (`AUTH_ALGORITHMS`, comma-separated, default
    /// `RS256` as Clerk signs; also `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`,
    /// `EdDSA`). HS256 is accepted only with `AUTH_HS256_SECRET`.
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// Allows HS256 development tokens beside JWKS (`AUTH_DEV_MODE`, default false): without it,
    /// a gateway configured with both refuses to start.
    pub dev_mode: bool,
}

/// Algorithms that `AUTH_ALGORITHMS` may name: asymmetric ones, whose keys come from the JWKS.
const JWKS_ALGORITHMS: [jsonwebtoken::Algorithm; 9] = {
    use jsonwebtoken::Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
};

/// Parses `AUTH_ALGORITHMS`.
pub fn parse_algorithms(list: &str) -> Result<Vec<jsonwebtoken::Algorithm>, String> {
    let mut algorithms = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let algorithm = JWKS_ALGORITHMS
            .iter()
            .find(|a| format!("{a:?}").eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                format!(
                    "{name:?} is not accepted: use one or more of RS256, RS384, RS512, PS256, \
                     PS384, PS512, ES256, ES384, EdDSA (HS256 is enabled by AUTH_HS256_SECRET)"
                )
            })?;
        if !algorithms.contains(algorithm) {
            algorithms.push(*algorithm);
        }
    }
    if algorithms.is_empty() {
        return Err("name at least one algorithm, e.g. RS256".into());
    }
    Ok(algorithms)
}

/// HS256 secrets that have been published (in this repository's examples, or as common
/// placeholders) and so protect nothing.
const PUBLISHED_SECRETS: [&str; 1] = ["dev-only-secret-change-me-0123456789abcdef"];

/// Words that mark a secret as a placeholder someone forgot to replace.
const PLACEHOLDER_MARKERS: [&str; 9] = [
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "placeholder",
    "your-secret",
    "your_secret",
    "example",
];

/// Why `secret` must not be used, if it is a published placeholder or obviously weak.
pub fn placeholder_reason(secret: &str) -> Option<String> {
    let lower = secret.to_ascii_lowercase();
    if PUBLISHED_SECRETS.contains(&secret) {
        return Some("is a published example value, not a secret".into());
    }
    if let Some(marker) = PLACEHOLDER_MARKERS.iter().find(|m| lower.contains(*m)) {
        return Some(format!("looks like a placeholder (contains {marker:?})"));
    }
    let distinct: std::collections::BTreeSet<u8> = secret.bytes().collect();
    if distinct.len() < 10 {
        return Some("has too few distinct characters to be a random secret".into());
    }
    None
}

impl Default for ServiceUrls {
    fn default() -> Self {
        Self {
            project: "http://127.0.0.1:50053".into(),
            ai: "http://127.0.0.1:50051".into(),
            deploy: "http://127.0.0.1:50052".into(),
            sandbox: "http://127.0.0.1:50054".into(),
        }
    }
}

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

impl Config {
    /// A configuration with every default and the given authentication, for tests and the
    /// all-in-one binary.
    pub fn new(auth: AuthConfig) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 8000)),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            services: ServiceUrls::default(),
            grpc: service_runtime::grpc::ClientOptions::default(),
            auth,
            limits: LimitsConfig::default(),
            max_body_bytes: 5 * 1024 * 1024,
            slow_request: Duration::from_secs(1),
            database_url: SecretString::from(service_runtime::db::sqlite_url(
                std::path::Path::new("data"),
                "gateway.db",
            )),
            db_max_connections: 10,
            edge: EdgeConfig::default(),
            streams: crate::sse::StreamLimits::default(),
            signing_key: None,
        }
    }

    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with_auth(AuthConfig::from_env()?)
    }

    /// Reads the configuration from the environment, with authentication decided by the caller
    /// (the all-in-one binary supplies a development secret when none is configured).
    pub fn from_env_with_auth(auth: AuthConfig) -> Result<Self, ConfigError> {
        let defaults = Self::new(AuthConfig::default());
        let services = ServiceUrls {
            project: optional("PROJECT_SERVICE_URL").unwrap_or(defaults.services.project),
            ai: optional("AI_SERVICE_URL").unwrap_or(defaults.services.ai),
            deploy: optional("DEPLOY_SERVICE_URL").unwrap_or(defaults.services.deploy),
            sandbox: optional("SANDBOX_SERVICE_URL").unwrap_or(defaults.services.sandbox),
        };
        let limit_defaults = LimitsConfig::default();
        let config = Self {
            listen_addr: listen_addr("GATEWAY_LISTEN_ADDR", 8000)?,
            workers: parse_or("GATEWAY_WORKERS", defaults.workers)?,
            services,
            grpc: service_runtime::grpc::ClientOptions {
                connect_timeout: Duration::from_millis(parse_or("GRPC_CONNECT_TIMEOUT_MS", 500)?),
                request_timeout: Duration::from_millis(parse_or(
                    "GRPC_REQUEST_TIMEOUT_MS",
                    30_000,
                )?),
            },
            auth,
            limits: LimitsConfig {
                api: parse_or("RATE_LIMIT_API", limit_defaults.api)?,
                ai: parse_or("RATE_LIMIT_AI", limit_defaults.ai)?,
                deploy: parse_or("RATE_LIMIT_DEPLOY", limit_defaults.deploy)?,
                sandbox: parse_or("RATE_LIMIT_SANDBOX", limit_defaults.sandbox)?,
                auth: parse_or("RATE_LIMIT_AUTH", limit_defaults.auth)?,
                integrations: parse_or("RATE_LIMIT_INTEGRATIONS", limit_defaults.integrations)?,
                redis_url: service_runtime::redis_endpoint::RedisEndpoint::from_env()?,
                redis_failure: parse_or("RATE_LIMIT_REDIS_FAILURE", RedisFailureMode::default())?,
                enabled: flag("RATE_LIMIT_ENABLED", true)?,
            },
            max_body_bytes: parse_or("MAX_BODY_BYTES", defaults.max_body_bytes)?,
            slow_request: Duration::from_millis(parse_or("SLOW_REQUEST_MS", 1000)?),
            database_url: service_runtime::db::url_from_env("gateway.db"),
            db_max_connections: parse_or("GATEWAY_DB_MAX_CONNECTIONS", 10)?,
            edge: EdgeConfig::from_env()?,
            streams: crate::sse::StreamLimits {
                write_timeout: Duration::from_secs(
                    parse_or(
                        "SSE_WRITE_TIMEOUT_SECS",
                        crate::sse::DEFAULT_WRITE_TIMEOUT_SECS,
                    )?
                    .get(),
                ),
                max_per_user: parse_or("SSE_MAX_STREAMS_PER_USER", defaults.streams.max_per_user)?,
                ..defaults.streams
            },
            signing_key: service_runtime::identity::SigningKey::from_env()?,
        };
        config.auth.validate()?;
        Ok(config)
    }
}

impl AuthConfig {
    /// Reads `AUTH_*` variables.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            jwks_url: optional("AUTH_JWKS_URL"),
            issuer: optional("AUTH_ISSUER"),
            authorized_parties: optional("AUTH_AUTHORIZED_PARTIES")
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            audience: optional("AUTH_AUDIENCE"),
            hs256_secret: optional("AUTH_HS256_SECRET").map(SecretString::from),
            leeway: Duration::from_secs(parse_or("AUTH_LEEWAY_SECS", 5)?),
            jwks_cache_ttl: Duration::from_secs(parse_or("AUTH_JWKS_CACHE_SECS", 300)?),
            jwks_min_refresh: Duration::from_secs(parse_or("AUTH_JWKS_REFRESH_MIN_SECS", 10)?),
            algorithms: optional("AUTH_ALGORITHMS")
                .map(|v| parse_algorithms(&v))
                .transpose()
                .map_err(|e| ConfigError::new("AUTH_ALGORITHMS", e))?
                .unwrap_or_else(|| vec![jsonwebtoken::Algorithm::RS256]),
            dev_mode: flag("AUTH_DEV_MODE", false)?,
        })
    }

    /// A development configuration: HS256 with `secret`.
    pub fn hs256(secret: &str) -> Self {
        Self {
            hs256_secret: Some(SecretString::from(secret.to_string())),
            ..Self::defaults()
        }
    }

    /// No verifier configured, default timings.
    pub fn defaults() -> Self {
        Self {
            leeway: Duration::from_secs(5),
            jwks_cache_ttl: Duration::from_secs(300),
            jwks_min_refresh: Duration::from_secs(10),
            algorithms: vec![jsonwebtoken::Algorithm::RS256],
            ..Self::default()
        }
    }

    /// Refuses a configuration that would leave the API open or weakly protected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        if self.jwks_url.is_none() && self.hs256_secret.is_none() {
            return Err(ConfigError::new(
                "AUTH_JWKS_URL",
                "no authentication configured: set AUTH_JWKS_URL (production, e.g. Clerk) or \
                 AUTH_HS256_SECRET (development)",
            ));
        }
        if let Some(secret) = &self.hs256_secret {
            let secret = secret.expose_secret();
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(ConfigError::new(
                    "AUTH_HS256_SECRET",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes long"),
                ));
            }
            if let Some(reason) = placeholder_reason(secret) {
                return Err(ConfigError::new(
                    "AUTH_HS256_SECRET",
                    format!("{reason}; generate one, e.g. `openssl rand -hex 32`"),
                ));
            }
            if self.jwks_url.is_some() && !self.dev_mode {
                return Err(ConfigError::new(
                    "AUTH_HS256_SECRET",
                    "HS256 development tokens and AUTH_JWKS_URL are both set: leave \
                     AUTH_HS256_SECRET blank in production, or set AUTH_DEV_MODE=true to accept \
                     both on purpose",
                ));
            }
        }
        if self.jwks_url.is_some() && self.algorithms.is_empty() {
            return Err(ConfigError::new(
                "AUTH_ALGORITHMS",
                "name at least one algorithm, e.g. RS256",
            ));
        }
        Ok(())
    }
}
