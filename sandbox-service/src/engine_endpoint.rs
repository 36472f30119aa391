//! Which Docker engine the sandbox runs code on, and how it is reached: a unix socket (the host's,
//! a rootless engine's, or the sidecar engine's on a volume shared inside the pod), or an engine on
//! another host over TLS with a client certificate. Plain TCP is refused: whoever reaches an
//! engine's API controls every container on it, and the engine's host.

use std::path::PathBuf;

use bollard::Docker;

/// Seconds a call to the engine may take (bollard's default).
const TIMEOUT_SECS: u64 = 120;

/// How the engine is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEndpoint {
    /// A unix socket, `unix:///path`.
    Socket(String),
    /// `tcp://host:port` (or `https://`) with TLS: the engine's CA and this client's certificate
    /// and key (`ca.pem`, `cert.pem`, `key.pem`) in a directory.
    Tls {
        /// The engine's address.
        host: String,
        /// The directory of the certificates.
        certs: PathBuf,
    },
}

impl EngineEndpoint {
    /// The endpoint for `host` (`None`: the local engine's default socket), with TLS when
    /// `tls_certs` names a certificate directory.
    pub fn parse(host: Option<&str>, tls_certs: Option<&PathBuf>) -> Result<Self, String> {
        let host = host.unwrap_or("unix:///var/run/docker.sock");
        if host.starts_with("unix://") {
            return Ok(Self::Socket(host.to_string()));
        }
        if !(host.starts_with("tcp://") || host.starts_with("https://")) {
            return Err(format!(
                "unsupported Docker engine address {host:?}: use unix:///path/to/docker.sock, or \
                 tcp://host:port with TLS"
            ));
        }
        match tls_certs {
            Some(certs) => Ok(Self::Tls {
                host: host.to_string(),
                certs: certs.clone(),
            }),
            None => Err(format!(
                "the Docker engine at {host} would be reached without TLS, and whoever reaches an \
                 engine's API is root on its host: set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH \
                 (ca.pem, cert.pem, key.pem of a client certificate the engine trusts), or use a \
                 unix socket"
            )),
        }
    }

    /// A client of the engine (no I/O yet).
    pub fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        match self {
            Self::Socket(path) => {
                Docker::connect_with_unix(path, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            }
            Self::Tls { host, certs } => Docker::connect_with_ssl(
                host,
                &certs.join("key.pem"),
                &certs.join("cert.pem"),
                &certs.join("ca.pem"),
                TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_and_tls_are_accepted_and_plain_tcp_is_refused() {
        assert_eq!(
            EngineEndpoint::parse(None, None).unwrap(),
            EngineEndpoint::Socket("unix:///var/run/docker.sock".into())
        );
        assert_eq!(
            EngineEndpoint::parse(Some("unix:///run/engine/docker.sock"), None).unwrap(),
            EngineEndpoint::Socket("unix:///run/engine/docker.sock".into())
        );
        let certs = PathBuf::from("/etc/sandbox-engine-tls");
        assert_eq!(
            EngineEndpoint::parse(Some("tcp://engine:2376"), Some(&certs)).unwrap(),
            EngineEndpoint::Tls {
                host: "tcp://engine:2376".into(),
                certs: certs.clone()
            }
        );
        let plain = EngineEndpoint::parse(Some("tcp://engine:2375"), None).unwrap_err();
        assert!(plain.contains("DOCKER_TLS_VERIFY"), "{plain}");
        assert!(EngineEndpoint::parse(Some("http://engine:2375"), Some(&certs)).is_err());
        assert!(EngineEndpoint::parse(Some("ssh://engine"), None).is_err());
    }

    #[test]
    fn a_tls_client_is_built_from_a_certificate_directory() {
        // Without the files the client cannot be built, and the error says which is missing.
        let certs = std::env::temp_dir().join(format!("no-certs-{}", uuid::Uuid::new_v4()));
        let endpoint = EngineEndpoint::parse(Some("tcp://engine:2376"), Some(&certs)).unwrap();
        assert!(endpoint.connect().is_err());
    }
}
