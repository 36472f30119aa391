//! Configuration of project-service, read once from the environment.

use std::net::SocketAddr;

use secrecy::SecretString;
use service_runtime::config::{ConfigError, listen_addr, parse_or};
use service_runtime::identity::VerifyingKeys;

/// Default largest file: 2 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 2 * 1024 * 1024;
/// Default largest sum of file sizes in one project: 50 MiB.
pub const DEFAULT_MAX_PROJECT_BYTES: u64 = 50 * 1024 * 1024;
/// Default largest number of files in one project.
pub const DEFAULT_MAX_FILES: u64 = 1000;
/// Default largest number of projects of one user.
pub const DEFAULT_MAX_PROJECTS_PER_USER: u64 = 1000;
/// Default largest sum of file sizes over all projects of one user: 1 GiB.
pub const DEFAULT_MAX_USER_BYTES: u64 = 1024 * 1024 * 1024;
/// Default size of the database connection pool.
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;
/// The largest `max_file_bytes` allowed: one PutFile message must carry the content plus the
/// path and id (a few hundred bytes) within `service_runtime::grpc::MAX_MESSAGE_SIZE`.
const LARGEST_FILE_BYTES: u64 = service_runtime::grpc::MAX_MESSAGE_SIZE as u64 - 4096;

/// Configuration of project-service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (`PROJECT_LISTEN_ADDR`, default `0.0.0.0:50053`).
    pub listen_addr: SocketAddr,
    /// `sqlite://…` or `postgres://…` (`DATABASE_URL`, default SQLite file `project.db` under
    /// `DATA_DIR`, itself defaulting to `./data`). May hold a password: a secret.
    pub database_url: SecretString,
    /// Largest accepted file content in bytes (`PROJECT_MAX_FILE_BYTES`, default 2 MiB).
    pub max_file_bytes: u64,
    /// Largest sum of file sizes in one project (`PROJECT_MAX_PROJECT_BYTES`, default 50 MiB).
    /// `ListFiles` with content returns a whole project in one message, so values above
    /// `service_runtime::grpc::MAX_MESSAGE_SIZE` (64 MiB) make that call fail for big projects.
    pub max_project_bytes: u64,
    /// Largest number of files in one project (`PROJECT_MAX_FILES`, default 1000).
    pub max_files: u64,
    /// Largest number of projects of one user (`PROJECT_MAX_PROJECTS_PER_USER`, default 1000).
    pub max_projects_per_user: u64,
    /// Largest sum of file sizes over all projects of one user (`PROJECT_MAX_USER_BYTES`,
    /// default 1 GiB).
    pub max_user_bytes: u64,
    /// Connection pool size (`PROJECT_DB_MAX_CONNECTIONS`, default 10).
    pub db_max_connections: u32,
    /// The gateway's public key(s) that every call's assertion must verify with
    /// (`IDENTITY_PUBLIC_KEY`; comma-separated during a key rotation). Required by `run`.
    pub caller_keys: Option<VerifyingKeys>,
}

impl Config {
    /// Reads the configuration from the environment; a malformed value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let database_url = service_runtime::db::url_from_env("project.db");
        let max_file_bytes = positive("PROJECT_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES)?;
        if max_file_bytes > LARGEST_FILE_BYTES {
            return Err(ConfigError::new(
                "PROJECT_MAX_FILE_BYTES",
                format!(
                    "must be at most {LARGEST_FILE_BYTES} bytes so that a file fits in one gRPC message"
                ),
            ));
        }
        Ok(Self {
            listen_addr: listen_addr("PROJECT_LISTEN_ADDR", 50053)?,
            database_url,
            max_file_bytes,
            max_project_bytes: positive("PROJECT_MAX_PROJECT_BYTES", DEFAULT_MAX_PROJECT_BYTES)?,
            max_files: positive("PROJECT_MAX_FILES", DEFAULT_MAX_FILES)?,
            max_projects_per_user: positive(
                "PROJECT_MAX_PROJECTS_PER_USER",
                DEFAULT_MAX_PROJECTS_PER_USER,
            )?,
            max_user_bytes: positive("PROJECT_MAX_USER_BYTES", DEFAULT_MAX_USER_BYTES)?,
            db_max_connections: u32::try_from(positive(
                "PROJECT_DB_MAX_CONNECTIONS",
                u64::from(DEFAULT_DB_MAX_CONNECTIONS),
            )?)
            .map_err(|_| ConfigError::new("PROJECT_DB_MAX_CONNECTIONS", "too large"))?,
            caller_keys: VerifyingKeys::from_env()?,
        })
    }

    /// The defaults for everything but the database, without reading the environment; used by
    /// tests and by the all-in-one binary.
    pub fn with_database_url(database_url: String) -> Self {
        Self {
            listen_addr: SocketAddr::from(([0, 0, 0, 0], 50053)),
            database_url: SecretString::from(database_url),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_project_bytes: DEFAULT_MAX_PROJECT_BYTES,
            max_files: DEFAULT_MAX_FILES,
            max_projects_per_user: DEFAULT_MAX_PROJECTS_PER_USER,
            max_user_bytes: DEFAULT_MAX_USER_BYTES,
            db_max_connections: DEFAULT_DB_MAX_CONNECTIONS,
            caller_keys: None,
        }
    }
}

/// A limit that must be at least 1 (a zero limit would make the service unusable, which is
/// surely a typo).
fn positive(name: &str, default: u64) -> Result<u64, ConfigError> {
    let value: u64 = parse_or(name, default)?;
    if value == 0 {
        return Err(ConfigError::new(name, "must be at least 1"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_database_credentials() {
        let config = Config::with_database_url("postgres://u:hunter2@db/x".to_string());
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("@db"), "{shown}");
    }
}
