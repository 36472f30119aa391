//! The TLS crypto of every client a service opens: HTTPS to outside providers (reqwest),
//! PostgreSQL (sqlx) and Redis. All use rustls with one crypto provider, ring, installed as the
//! process default: pure Rust and assembly, no C toolchain or OpenSSL in the images.

use std::sync::Once;

/// Makes ring the process's rustls crypto provider. Idempotent and cheap; every client builder
/// in this crate calls it, so callers need not.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Another provider installed first (there is none in this workspace) would serve as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A builder of HTTP clients for outside services, with the crypto provider in place. Server
/// certificates are checked against the system's roots (`ca-certificates` in the images).
pub fn http_client() -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_is_ring_and_clients_build() {
        http_client().build().unwrap();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().unwrap();
        assert!(
            provider
                .cipher_suites
                .iter()
                .any(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
}
