//! `Keyring`: users' provider tokens encrypted at rest with XChaCha20-Poly1305 under
//! `SECRETS_KEY`, each ciphertext stored with the id of the key that sealed it, so that
//! `SECRETS_KEY_PREVIOUS` keeps older rows readable while [`Keyring::reseal`] moves them to the
//! current key (key rotation without downtime).
//!
//! A sealed value is `base64(nonce ‖ ciphertext ‖ tag)`; the associated data binds it to its
//! owner and provider, so a ciphertext copied into another user's row does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Length of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// Why a key in the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("must be 32 random bytes in base64 (for example `openssl rand -base64 32`): {0}")]
pub struct BadKey(String);

/// A stored token that does not open with any configured key.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Sealed under a key that is neither `SECRETS_KEY` nor `SECRETS_KEY_PREVIOUS`.
    #[error("sealed with key {0}, which is not configured (SECRETS_KEY or SECRETS_KEY_PREVIOUS)")]
    UnknownKey(String),
    /// The ciphertext or its associated data was altered, or it is not ours.
    #[error("the stored token does not decrypt (altered, or sealed for another row)")]
    Corrupt,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn parse(raw: &SecretString) -> Result<Self, BadKey> {
        let bytes = STANDARD
            .decode(raw.expose_secret().trim())
            .map_err(|e| BadKey(format!("not base64: {e}")))?;
        if bytes.len() != 32 {
            return Err(BadKey(format!("{} bytes, not 32", bytes.len())));
        }
        // The id names the key without revealing it: a truncated digest.
        let id = format!("k{}", &hex::encode(Sha256::digest(&bytes))[..12]);
        let cipher =
            XChaCha20Poly1305::new_from_slice(&bytes).map_err(|e| BadKey(e.to_string()))?;
        Ok(Self { id, cipher })
    }
}

/// The current key and, during a rotation, the previous one.
pub struct Keyring {
    current: Key,
    previous: Option<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

impl Keyring {
    /// A keyring from the base64 keys of the configuration.
    pub fn new(current: &SecretString, previous: Option<&SecretString>) -> Result<Self, BadKey> {
        Ok(Self {
            current: Key::parse(current)?,
            previous: previous.map(Key::parse).transpose()?,
        })
    }

    /// A fresh random key in base64 (tests and the all-in-one binary).
    pub fn generate_key() -> SecretString {
        SecretString::from(STANDARD.encode(rand::random::<[u8; 32]>()))
    }

    /// The id of the key new values are sealed with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain` for the row named by `context`; returns (key id, sealed value).
    pub fn seal(&self, plain: &SecretString, context: &str) -> (String, String) {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = self
            .current
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plain.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // Encryption fails only for messages beyond the cipher's limit (256 GiB).
            .unwrap_or_default();
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        (self.current.id.clone(), STANDARD.encode(out))
    }

    /// Opens a value sealed by [`Keyring::seal`] with key `key_id` for `context`.
    pub fn open(
        &self,
        key_id: &str,
        sealed: &str,
        context: &str,
    ) -> Result<SecretString, OpenError> {
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey(key_id.to_string()))?;
        let bytes = STANDARD.decode(sealed).map_err(|_| OpenError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(OpenError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| OpenError::Corrupt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| OpenError::Corrupt)
    }

    /// Whether a value sealed with `key_id` should be resealed with the current key.
    pub fn is_stale(&self, key_id: &str) -> bool {
        key_id != self.current.id
    }

    /// Opens a value sealed with an older key and seals it again with the current one.
    pub fn reseal(
        &self,
        key_id: &str,
        sealed: &str,
        context: &str,
    ) -> Result<(String, String), OpenError> {
        let plain = self.open(key_id, sealed, context)?;
        Ok(self.seal(&plain, context))
    }
}

/// The associated data of a connection's token: it only opens in its own row.
pub fn token_context(owner: &str, provider: &str) -> String {
    format!("autocrea.deploy.connection.v1\n{owner}\n{provider}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_tokens_open_only_in_their_row_and_with_a_known_key() {
        let old = Keyring::generate_key();
        let new = Keyring::generate_key();
        let before = Keyring::new(&old, None).unwrap();
        let token = SecretString::from("tok_live_1234");
        let (id, sealed) = before.seal(&token, "a");
        assert!(!sealed.contains("tok_live"));
        assert_eq!(
            before.open(&id, &sealed, "a").unwrap().expose_secret(),
            "tok_live_1234"
        );
        assert!(matches!(
            before.open(&id, &sealed, "b"),
            Err(OpenError::Corrupt)
        ));

        let rotated = Keyring::new(&new, Some(&old)).unwrap();
        assert!(rotated.is_stale(&id));
        let (new_id, resealed) = rotated.reseal(&id, &sealed, "a").unwrap();
        assert_eq!(new_id, rotated.current_id());
        assert!(!rotated.is_stale(&new_id));
        assert_eq!(
            rotated
                .open(&new_id, &resealed, "a")
                .unwrap()
                .expose_secret(),
            "tok_live_1234"
        );

        let forgotten = Keyring::new(&new, None).unwrap();
        assert!(matches!(
            forgotten.open(&id, &sealed, "a"),
            Err(OpenError::UnknownKey(_))
        ));
        assert!(format!("{rotated:?}").contains(&new_id));
    }

    #[test]
    fn keys_must_be_32_bytes_of_base64() {
        for bad in ["", "not base64!", "c2hvcnQ="] {
            assert!(
                Keyring::new(&SecretString::from(bad), None).is_err(),
                "{bad}"
            );
        }
    }
}
