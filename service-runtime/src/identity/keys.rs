//! The Ed25519 keys of caller assertions: the gateway's private key, which signs them, and the
//! public keys every service verifies them with.
//!
//! Both are read from one line of text, so that they fit an `.env` file or a Kubernetes Secret
//! literal: the base64 of the DER encoding (`openssl pkey -outform DER | base64 -w0`), or the PEM
//! file itself (`-----BEGIN PRIVATE KEY-----` …). The private key is PKCS#8, the public key
//! SubjectPublicKeyInfo, as `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write
//! them. `deploy/scripts/identity-keys.sh` makes a pair.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretBox};

use crate::config::{ConfigError, optional};

/// The variable holding the gateway's private key.
pub const SIGNING_KEY_VAR: &str = "IDENTITY_SIGNING_KEY";
/// The variable holding the public key(s) services verify assertions with.
pub const PUBLIC_KEY_VAR: &str = "IDENTITY_PUBLIC_KEY";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo; the 32 key bytes follow (RFC 8410).
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The gateway's Ed25519 private key. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey {
    pkcs8: std::sync::Arc<SecretBox<Vec<u8>>>,
    public: VerifyingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("private", &"[redacted]")
            .field("public", &self.public)
            .finish()
    }
}

impl SigningKey {
    /// Parses a PKCS#8 Ed25519 private key (base64 DER or PEM).
    pub fn parse(text: &str) -> Result<Self, String> {
        let der = der_from_text(text, "PRIVATE KEY")?;
        Self::from_pkcs8(der)
    }

    /// A new random key pair (the all-in-one binary makes one at each start; tests too).
    pub fn generate() -> Self {
        let rng = ring::rand::SystemRandom::new();
        let document = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("the system random generator works");
        Self::from_pkcs8(document.as_ref().to_vec()).expect("a generated key parses")
    }

    /// `IDENTITY_SIGNING_KEY`, when set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        optional(SIGNING_KEY_VAR)
            .map(|text| Self::parse(&text).map_err(|e| ConfigError::new(SIGNING_KEY_VAR, e)))
            .transpose()
    }

    fn from_pkcs8(der: Vec<u8>) -> Result<Self, String> {
        use ring::signature::KeyPair;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| "not an Ed25519 private key in PKCS#8 form".to_string())?;
        let public = VerifyingKey::from_raw(pair.public_key().as_ref())?;
        Ok(Self {
            pkcs8: std::sync::Arc::new(SecretBox::new(Box::new(der))),
            public,
        })
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key as jsonwebtoken signs with it.
    pub(crate) fn encoding_key(&self) -> EncodingKey {
        EncodingKey::from_ed_der(self.pkcs8.expose_secret())
    }
}

/// An Ed25519 public key that verifies assertions.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    raw: [u8; 32],
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifyingKey({})", self.to_base64())
    }
}

impl VerifyingKey {
    /// Parses a SubjectPublicKeyInfo Ed25519 public key (base64 DER or PEM).
    pub fn parse(text: &str) -> Result<Self, String> {
        let der = der_from_text(text, "PUBLIC KEY")?;
        match der.strip_prefix(&SPKI_PREFIX[..]) {
            Some(raw) => Self::from_raw(raw),
            None => Err("not an Ed25519 public key in SubjectPublicKeyInfo form".to_string()),
        }
    }

    fn from_raw(raw: &[u8]) -> Result<Self, String> {
        let raw = <[u8; 32]>::try_from(raw)
            .map_err(|_| "an Ed25519 public key is 32 bytes".to_string())?;
        Ok(Self { raw })
    }

    /// The base64 of its SubjectPublicKeyInfo DER: the form `IDENTITY_PUBLIC_KEY` takes.
    pub fn to_base64(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        STANDARD.encode(der)
    }

    /// The key as jsonwebtoken verifies with it (the raw 32 bytes).
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ed_der(&self.raw)
    }
}

/// The public keys a service accepts: normally one; two while the gateway's key is rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKeys(Vec<VerifyingKey>);

impl VerifyingKeys {
    /// Parses a comma-separated list of public keys.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys = text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(VerifyingKey::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no public key given".to_string());
        }
        Ok(Self(keys))
    }

    /// `IDENTITY_PUBLIC_KEY`, when set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        optional(PUBLIC_KEY_VAR)
            .map(|text| Self::parse(&text).map_err(|e| ConfigError::new(PUBLIC_KEY_VAR, e)))
            .transpose()
    }

    /// The keys, in the order given.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.0
    }
}

impl From<VerifyingKey> for VerifyingKeys {
    fn from(key: VerifyingKey) -> Self {
        Self(vec![key])
    }
}

/// The DER bytes of `text`: a PEM block labelled `label`, or base64 of the DER itself.
fn der_from_text(text: &str, label: &str) -> Result<Vec<u8>, String> {
    let text = text.trim();
    let body = if text.starts_with("-----BEGIN") {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let inner = text
            .strip_prefix(begin.as_str())
            .and_then(|rest| rest.split(end.as_str()).next())
            .ok_or_else(|| format!("a PEM key here must be a {begin} block"))?;
        // A PEM block kept on one line of an env file has its line breaks as `\n`.
        inner.replace("\\n", "\n")
    } else {
        text.to_string()
    };
    let body: String = body.split_whitespace().collect();
    STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("neither PEM nor base64 DER: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_pair_round_trips_through_its_text_forms() {
        let key = SigningKey::generate();
        let public = VerifyingKey::parse(&key.verifying_key().to_base64()).unwrap();
        assert_eq!(&public, key.verifying_key());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            key.verifying_key().to_base64()
        );
        assert_eq!(&VerifyingKey::parse(&pem).unwrap(), key.verifying_key());
        let one_line = pem.replace('\n', "\\n");
        assert_eq!(
            &VerifyingKey::parse(&one_line).unwrap(),
            key.verifying_key()
        );
    }

    #[test]
    fn openssl_keys_parse() {
        // Made with `openssl genpkey -algorithm ed25519` (PKCS#8 v1) and `openssl pkey -pubout`;
        // a throwaway pair used nowhere else.
        let private = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEIP2WMZm2hzsSbmSf6tmyRCXYquJDtTFVcuKI2BlGUb7C\n\
            -----END PRIVATE KEY-----\n";
        let key = SigningKey::parse(private).unwrap();
        let from_der =
            SigningKey::parse("MC4CAQAwBQYDK2VwBCIEIP2WMZm2hzsSbmSf6tmyRCXYquJDtTFVcuKI2BlGUb7C")
                .unwrap();
        assert_eq!(key.verifying_key(), from_der.verifying_key());
        let public = "MCowBQYDK2VwAyEAGi++SPOf/yEcqd0hh+9FHwktcqs7REk8LM3nnfYtc7Q=";
        assert_eq!(&VerifyingKey::parse(public).unwrap(), key.verifying_key());
        assert!(!format!("{key:?}").contains("MC4C"));
    }

    #[test]
    fn wrong_keys_are_refused_with_a_reason() {
        assert!(
            SigningKey::parse("not base64!")
                .unwrap_err()
                .contains("base64")
        );
        assert!(VerifyingKey::parse("AAAA").unwrap_err().contains("Ed25519"));
        let private_as_public = "MC4CAQAwBQYDK2VwBCIEIP2WMZm2hzsSbmSf6tmyRCXYquJDtTFVcuKI2BlGUb7C";
        assert!(VerifyingKey::parse(private_as_public).is_err());
        assert!(VerifyingKeys::parse(" , ").is_err());
        let a = SigningKey::generate();
        let b = SigningKey::generate();
        let both = format!(
            "{},{}",
            a.verifying_key().to_base64(),
            b.verifying_key().to_base64()
        );
        assert_eq!(VerifyingKeys::parse(&both).unwrap().keys().len(), 2);
    }
}
