//! Where a service's Redis is and how its server is trusted: `REDIS_URL`, `redis://` (plain) or
//! `rediss://` (TLS, the server's certificate checked against the system's roots), and
//! `REDIS_CA_FILE`, the PEM CA to check it against instead (a managed Redis with a private CA, or
//! one's own). Every service opens Redis through [`RedisEndpoint::client`].

use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, optional};

/// A Redis server to connect to. The URL may hold a password, so it is a secret.
#[derive(Debug, Clone)]
pub struct RedisEndpoint {
    url: SecretString,
    ca_file: Option<PathBuf>,
}

impl RedisEndpoint {
    /// The server at `url`, trusted by the system's roots when it is `rediss://`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            ca_file: None,
        }
    }

    /// Checks the server's certificate against the CA certificates (PEM) in `path` only.
    pub fn with_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// `REDIS_URL` and `REDIS_CA_FILE`; `None` when `REDIS_URL` is unset. A CA file that is
    /// unreadable, or given without a `rediss://` URL, is a configuration error.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let ca_file = optional("REDIS_CA_FILE").map(PathBuf::from);
        let Some(url) = optional("REDIS_URL") else {
            return match ca_file {
                Some(_) => Err(ConfigError::new(
                    "REDIS_CA_FILE",
                    "is set but REDIS_URL is not; set both, with a rediss:// URL",
                )),
                None => Ok(None),
            };
        };
        let mut endpoint = Self::new(url);
        if let Some(path) = ca_file {
            if !endpoint.is_tls() {
                return Err(ConfigError::new(
                    "REDIS_CA_FILE",
                    "applies to TLS only: REDIS_URL must start with rediss://",
                ));
            }
            read_ca(&path).map_err(|e| ConfigError::new("REDIS_CA_FILE", format!("{e:#}")))?;
            endpoint = endpoint.with_ca_file(path);
        }
        Ok(Some(endpoint))
    }

    /// Whether the connection is encrypted (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.url.expose_secret().starts_with("rediss://")
    }

    /// A client for the server (no I/O yet; the first command connects).
    pub fn client(&self) -> anyhow::Result<redis::Client> {
        crate::tls::install_crypto_provider();
        let url = self.url.expose_secret();
        match &self.ca_file {
            None => redis::Client::open(url),
            Some(path) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(read_ca(path)?),
                },
            ),
        }
        .context("REDIS_URL is not a usable Redis URL")
    }
}

impl From<String> for RedisEndpoint {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

fn read_ca(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_never_prints_and_tls_follows_the_scheme() {
        let endpoint = RedisEndpoint::new("rediss://:hunter2-password@cache:6380");
        assert!(!format!("{endpoint:?}").contains("hunter2"));
        assert!(endpoint.is_tls());
        assert!(!RedisEndpoint::new("redis://cache").is_tls());
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("redis-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_pem = dir.join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let error = read_ca(&not_pem).unwrap_err().to_string();
        assert!(error.contains("no PEM certificate"), "{error}");
        let missing = read_ca(&dir.join("missing.pem")).unwrap_err().to_string();
        assert!(missing.contains("cannot read"), "{missing}");
        let endpoint = RedisEndpoint::new("rediss://cache").with_ca_file(&not_pem);
        assert!(endpoint.client().is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
