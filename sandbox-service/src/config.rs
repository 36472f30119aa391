//! Configuration of sandbox-service: where to listen, which Docker engine and image, the limits
//! every run gets, the warm pool and the queue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use service_runtime::config::{ConfigError, listen_addr, optional, parse_or};
use service_runtime::identity::VerifyingKeys;

use crate::engine_endpoint::EngineEndpoint;
use crate::language::Language;

/// Default tag of the runtime image, built by `deploy/sandbox/build-images.sh`.
pub const DEFAULT_IMAGE: &str = "autocrea/sandbox-runtime:1";

const MIB: i64 = 1024 * 1024;

/// Configuration of sandbox-service. [`Config::default`] holds the documented defaults without
/// reading the environment (tests start from it); [`Config::from_env`] reads the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`SANDBOX_LISTEN_ADDR`, default `0.0.0.0:50054`).
    pub listen_addr: SocketAddr,
    /// Docker engine address (`DOCKER_HOST`: `unix:///path`, or `tcp://host:port` with TLS);
    /// `None` is the local engine's socket, `/var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// The engine's CA and this service's client certificate and key (`ca.pem`, `cert.pem`,
    /// `key.pem`) for a `tcp://` engine: `DOCKER_CERT_PATH` (default `~/.docker`) when
    /// `DOCKER_TLS_VERIFY` is set. A `tcp://` engine without them is refused.
    pub docker_tls_certs: Option<PathBuf>,
    /// Runtime image every language runs in (`SANDBOX_IMAGE`, default `autocrea/sandbox-runtime:1`).
    pub image: String,
    /// Name of this service instance (`SANDBOX_INSTANCE`, default `default`). Containers are
    /// labelled with it; at start and at shutdown the instance removes every container carrying
    /// its label, so instances sharing one Docker engine must have different names.
    pub instance: String,
    /// Limits every run gets.
    pub limits: Limits,
    /// Largest `timeoutMs` a request may ask for (`SANDBOX_MAX_TIMEOUT_MS`, default 60000).
    pub max_timeout: Duration,
    /// Started, idle containers kept ready per language, each with its interpreter already
    /// running (`SANDBOX_POOL_SIZE`, default 2; 0 disables the pools).
    pub pool_size: usize,
    /// Per-language sizes that replace `pool_size` (`SANDBOX_POOL_SIZES`, e.g.
    /// `python=4,javascript=4,bash=1`).
    pub pool_sizes: Vec<(String, usize)>,
    /// Runs executing at once (`SANDBOX_MAX_CONCURRENT_RUNS`, default twice the CPU count).
    pub max_concurrent_runs: usize,
    /// Runs allowed to wait for a slot (`SANDBOX_QUEUE_LIMIT`, default 64); beyond it requests get
    /// `RESOURCE_EXHAUSTED`.
    pub queue_limit: usize,
    /// Limits on the request itself.
    pub request_limits: RequestLimits,
    /// Unix user and group the code runs as (`SANDBOX_USER`, default `10001:10001`).
    pub user: String,
    /// The gateway's public key(s) that every call's assertion must verify with
    /// (`IDENTITY_PUBLIC_KEY`; comma-separated during a key rotation). Required by `run`.
    pub caller_keys: Option<VerifyingKeys>,
}

/// Resource limits of one run, echoed back in every result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Default wall-clock limit (`SANDBOX_TIMEOUT_MS`, default 10000).
    pub timeout: Duration,
    /// Memory of the container; swap is set equal so none is added (`SANDBOX_MEMORY_BYTES`,
    /// default 512 MiB).
    pub memory_bytes: i64,
    /// CPU share in billionths of a CPU (`SANDBOX_CPUS` as a decimal, default 0.5).
    pub nano_cpus: i64,
    /// Processes and threads at once (`SANDBOX_PIDS_LIMIT`, default 64).
    pub pids: i64,
    /// Combined stdout+stderr kept before the run is truncated and stopped
    /// (`SANDBOX_OUTPUT_BYTES`, default 1 MiB).
    pub output_bytes: usize,
    /// Size of each tmpfs, `/work` and `/tmp` (`SANDBOX_TMPFS_BYTES`, default 64 MiB).
    pub tmpfs_bytes: i64,
    /// RLIMIT_FSIZE (`SANDBOX_FILE_SIZE_BYTES`, default 32 MiB).
    pub file_size_bytes: i64,
    /// RLIMIT_NOFILE (`SANDBOX_OPEN_FILES`, default 256).
    pub open_files: i64,
}

/// Bounds on what a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Files per run (`SANDBOX_MAX_FILES`, default 32).
    pub max_files: usize,
    /// Total bytes of code (`SANDBOX_MAX_CODE_BYTES`, default 512 KiB).
    pub max_code_bytes: usize,
    /// Bytes of stdin (`SANDBOX_MAX_STDIN_BYTES`, default 1 MiB).
    pub max_stdin_bytes: usize,
    /// Command-line arguments (`SANDBOX_MAX_ARGS`, default 64).
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            memory_bytes: 512 * MIB,
            nano_cpus: 500_000_000,
            pids: 64,
            output_bytes: 1024 * 1024,
            tmpfs_bytes: 64 * MIB,
            file_size_bytes: 32 * MIB,
            open_files: 256,
        }
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            max_files: 32,
            max_code_bytes: 512 * 1024,
            max_stdin_bytes: 1024 * 1024,
            max_args: 64,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 50054)),
            docker_host: None,
            docker_tls_certs: None,
            image: DEFAULT_IMAGE.to_string(),
            instance: "default".to_string(),
            limits: Limits::default(),
            max_timeout: Duration::from_secs(60),
            pool_size: 2,
            pool_sizes: Vec::new(),
            max_concurrent_runs: cpus * 2,
            queue_limit: 64,
            request_limits: RequestLimits::default(),
            user: "10001:10001".to_string(),
            caller_keys: None,
        }
    }
}

impl Config {
    /// Reads the configuration from the environment; unset variables keep the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let limits = Limits {
            timeout: millis("SANDBOX_TIMEOUT_MS", d.limits.timeout)?,
            memory_bytes: positive("SANDBOX_MEMORY_BYTES", d.limits.memory_bytes)?,
            nano_cpus: cpus("SANDBOX_CPUS", d.limits.nano_cpus)?,
            pids: positive("SANDBOX_PIDS_LIMIT", d.limits.pids)?,
            output_bytes: positive("SANDBOX_OUTPUT_BYTES", d.limits.output_bytes)?,
            tmpfs_bytes: positive("SANDBOX_TMPFS_BYTES", d.limits.tmpfs_bytes)?,
            file_size_bytes: positive("SANDBOX_FILE_SIZE_BYTES", d.limits.file_size_bytes)?,
            open_files: positive("SANDBOX_OPEN_FILES", d.limits.open_files)?,
        };
        let config = Self {
            listen_addr: listen_addr("SANDBOX_LISTEN_ADDR", 50054)?,
            docker_host: optional("DOCKER_HOST"),
            docker_tls_certs: docker_tls_certs(),
            image: optional("SANDBOX_IMAGE").unwrap_or(d.image),
            instance: optional("SANDBOX_INSTANCE").unwrap_or(d.instance),
            limits,
            max_timeout: millis("SANDBOX_MAX_TIMEOUT_MS", d.max_timeout)?,
            pool_size: parse_or("SANDBOX_POOL_SIZE", d.pool_size)?,
            pool_sizes: pool_sizes("SANDBOX_POOL_SIZES")?,
            max_concurrent_runs: positive("SANDBOX_MAX_CONCURRENT_RUNS", d.max_concurrent_runs)?,
            queue_limit: parse_or("SANDBOX_QUEUE_LIMIT", d.queue_limit)?,
            request_limits: RequestLimits {
                max_files: positive("SANDBOX_MAX_FILES", d.request_limits.max_files)?,
                max_code_bytes: positive(
                    "SANDBOX_MAX_CODE_BYTES",
                    d.request_limits.max_code_bytes,
                )?,
                max_stdin_bytes: parse_or(
                    "SANDBOX_MAX_STDIN_BYTES",
                    d.request_limits.max_stdin_bytes,
                )?,
                max_args: parse_or("SANDBOX_MAX_ARGS", d.request_limits.max_args)?,
            },
            user: optional("SANDBOX_USER").unwrap_or(d.user),
            caller_keys: VerifyingKeys::from_env()?,
        };
        EngineEndpoint::parse(
            config.docker_host.as_deref(),
            config.docker_tls_certs.as_ref(),
        )
        .map_err(|e| ConfigError::new("DOCKER_HOST", e))?;
        if config.limits.timeout > config.max_timeout {
            return Err(ConfigError::new(
                "SANDBOX_TIMEOUT_MS",
                "the default timeout exceeds SANDBOX_MAX_TIMEOUT_MS",
            ));
        }
        Ok(config)
    }
}

impl Config {
    /// The warm pool size of `language`.
    pub fn pool_size_for(&self, language: &Language) -> usize {
        self.pool_sizes
            .iter()
            .find(|(name, _)| Language::find(name).is_some_and(|l| l.name == language.name))
            .map_or(self.pool_size, |&(_, n)| n)
    }
}

/// The client certificate directory when `DOCKER_TLS_VERIFY` asks for TLS (as the Docker CLI
/// reads it: any value but empty, `0` or `false`).
fn docker_tls_certs() -> Option<PathBuf> {
    let verify = optional("DOCKER_TLS_VERIFY")?;
    if verify == "0" || verify.eq_ignore_ascii_case("false") {
        return None;
    }
    Some(optional("DOCKER_CERT_PATH").map_or_else(
        || PathBuf::from(optional("HOME").unwrap_or_else(|| "/".to_string())).join(".docker"),
        PathBuf::from,
    ))
}

fn pool_sizes(name: &str) -> Result<Vec<(String, usize)>, ConfigError> {
    let Some(raw) = optional(name) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(|part| {
            let (language, size) = part.split_once('=').ok_or_else(|| {
                ConfigError::new(name, format!("expected language=size pairs, got {part:?}"))
            })?;
            let language = Language::find(language).ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!(
                        "unknown language {language:?}; supported: {}",
                        Language::supported()
                    ),
                )
            })?;
            let size = size
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {size:?}: {e}")))?;
            Ok((language.name.to_string(), size))
        })
        .collect()
}

fn positive<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default + Copy,
    T::Err: std::fmt::Display,
{
    let value = parse_or(name, default)?;
    if value <= T::default() {
        return Err(ConfigError::new(name, "must be greater than zero"));
    }
    Ok(value)
}

fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    let ms: u64 = positive(name, u64::try_from(default.as_millis()).unwrap_or(u64::MAX))?;
    Ok(Duration::from_millis(ms))
}

fn cpus(name: &str, default_nanos: i64) -> Result<i64, ConfigError> {
    let Some(raw) = optional(name) else {
        return Ok(default_nanos);
    };
    let cpus: f64 = raw
        .parse()
        .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))?;
    if !(cpus > 0.0 && cpus <= 1024.0) {
        return Err(ConfigError::new(
            name,
            "expected a number of CPUs such as 0.5",
        ));
    }
    Ok((cpus * 1e9) as i64)
}
