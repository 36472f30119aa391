//! Signed caller identity between the gateway and the services.
//!
//! The network between services is not trusted. The gateway, having authenticated the user,
//! mints for each downstream call a short-lived *assertion*: a JWT signed with its Ed25519 key
//! ([`SigningKey`], which only the gateway holds), naming the user, how they authenticated, their
//! scopes, the request id, and the services it is addressed to (`aud`). It travels in the
//! [`ASSERTION`] metadata. Every service verifies it once, in front of all of its methods
//! ([`VerifyLayer`], put there by [`crate::grpc::serve`]), with the gateway's public key: a call
//! without a valid assertion addressed to that service is refused `UNAUTHENTICATED` and logged
//! with the peer's address; health checks stay open. Handlers read the verified [`Caller`] with
//! [`crate::grpc::caller`].
//!
//! A service acting for the user on another service forwards the assertion it received
//! ([`Caller::forward`]); it never mints one. Work that outlives the request (a deployment's
//! upload) holds a [`GRANT`]: an assertion the gateway minted for exactly that, addressed to
//! project-service and limited to reading one project's files, with a longer lifetime.

mod keys;
mod layer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

pub use keys::{PUBLIC_KEY_VAR, SIGNING_KEY_VAR, SigningKey, VerifyingKey, VerifyingKeys};
pub use layer::{OnBehalfOf, SignedChannel, Verify, VerifyLayer};

/// Metadata key of the caller assertion.
pub const ASSERTION: &str = "x-autocrea-assertion";
/// Metadata key of a grant to read one project's files, sent with a deployment's creation.
pub const GRANT: &str = "x-autocrea-grant";
/// The issuer every assertion names.
pub const ISSUER: &str = "autocrea-gateway";
/// How long an assertion for one call lives.
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(60);
/// Clock difference tolerated between the gateway and a service.
const LEEWAY_SECS: u64 = 5;
/// Longest user id accepted.
const MAX_USER_ID_LEN: usize = 256;

/// The services' names, used as the audiences of assertions.
pub mod audience {
    /// project-service.
    pub const PROJECT: &str = "project-service";
    /// ai-service.
    pub const AI: &str = "ai-service";
    /// deploy-service.
    pub const DEPLOY: &str = "deploy-service";
    /// sandbox-service.
    pub const SANDBOX: &str = "sandbox-service";
    /// Every service.
    pub const ALL: [&str; 4] = [PROJECT, AI, DEPLOY, SANDBOX];
}

/// What an assertion says (a JWT's claims).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Always [`ISSUER`].
    pub iss: String,
    /// The user id.
    pub sub: String,
    /// The services it is addressed to.
    pub aud: Vec<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// How the user authenticated: `jwt` (a session token) or `api_key`.
    pub amr: String,
    /// The scopes the user's credential carries (empty for a session token: everything).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The gateway's request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Set on a grant: the only project whose files it may read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}

/// Mints assertions; only the gateway has one.
#[derive(Clone)]
pub struct AssertionSigner {
    key: EncodingKey,
}

impl std::fmt::Debug for AssertionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AssertionSigner([redacted])")
    }
}

impl AssertionSigner {
    /// A signer with `key`.
    pub fn new(key: &SigningKey) -> Self {
        Self {
            key: key.encoding_key(),
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.key)
    }

    /// Signs an assertion for `who`, addressed to `audiences`, valid for `lifetime` from now.
    pub fn mint(
        &self,
        who: &OnBehalfOf,
        audiences: &[&str],
        lifetime: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(&who.claims(audiences, lifetime, None))
    }
}

/// The caller of a request, as the gateway's assertion vouched for it.
#[derive(Clone)]
pub struct Caller {
    /// The user id.
    pub user_id: String,
    /// How the user authenticated (`jwt`, `api_key`).
    pub auth_method: String,
    /// The scopes of the user's credential.
    pub scopes: Vec<String>,
    /// The gateway's request id.
    pub request_id: Option<String>,
    /// Set when the assertion is a grant: the only project whose files it may read.
    pub project_grant: Option<String>,
    assertion: SecretString,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("user_id", &self.user_id)
            .field("auth_method", &self.auth_method)
            .field("scopes", &self.scopes)
            .field("request_id", &self.request_id)
            .field("project_grant", &self.project_grant)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// `message` as a request carrying this caller's assertion as received, for a call to
    /// another service on the user's behalf (which must be among the assertion's audiences).
    pub fn forward<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        attach(&mut request, ASSERTION, &self.assertion);
        request
    }

    /// The assertion as received.
    pub fn assertion(&self) -> &SecretString {
        &self.assertion
    }
}

/// Puts `token` in `request`'s metadata under `key` (a token that is not valid metadata is left
/// out, and the receiving service then refuses the call).
pub fn attach<T>(request: &mut tonic::Request<T>, key: &'static str, token: &SecretString) {
    if let Ok(value) = token.expose_secret().parse() {
        request.metadata_mut().insert(key, value);
    }
}

/// Why an assertion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No assertion in the metadata.
    #[error("no caller assertion ({ASSERTION} metadata); calls must come through the gateway")]
    Missing,
    /// Past its expiry.
    #[error("the caller assertion has expired")]
    Expired,
    /// Addressed to other services.
    #[error("the caller assertion is not addressed to {0}")]
    WrongAudience(&'static str),
    /// Not signed by the gateway's key.
    #[error("the caller assertion's signature does not verify with the gateway's key")]
    BadSignature,
    /// Anything else (malformed, wrong issuer or algorithm, bad user id).
    #[error("the caller assertion is invalid: {0}")]
    Invalid(String),
}

/// Verifies assertions addressed to one service.
#[derive(Clone)]
pub struct CallerVerifier {
    keys: std::sync::Arc<[jsonwebtoken::DecodingKey]>,
    validation: std::sync::Arc<Validation>,
    audience: &'static str,
}

impl std::fmt::Debug for CallerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerVerifier")
            .field("keys", &self.keys.len())
            .field("audience", &self.audience)
            .finish()
    }
}

impl CallerVerifier {
    /// A verifier of assertions for `audience` (this service's name) signed by any of `keys`.
    pub fn new(keys: &VerifyingKeys, audience: &'static str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        Self {
            keys: keys.keys().iter().map(VerifyingKey::decoding_key).collect(),
            validation: std::sync::Arc::new(validation),
            audience,
        }
    }

    /// A verifier for `audience` with the configured `keys`, or the start-up error that says to
    /// set `IDENTITY_PUBLIC_KEY`: a service never runs without checking its callers.
    pub fn required(
        keys: Option<&VerifyingKeys>,
        audience: &'static str,
    ) -> Result<Self, crate::config::ConfigError> {
        keys.map(|keys| Self::new(keys, audience)).ok_or_else(|| {
            crate::config::ConfigError::new(
                PUBLIC_KEY_VAR,
                "must be set to the gateway's public key (deploy/scripts/identity-keys.sh makes \
                 a pair): every call is checked against it",
            )
        })
    }

    /// The service this verifier admits calls to.
    pub fn audience(&self) -> &'static str {
        self.audience
    }

    /// The caller `token` vouches for, or why not.
    pub fn verify(&self, token: &str) -> Result<Caller, Refusal> {
        use jsonwebtoken::errors::ErrorKind;
        let mut refusal = Refusal::BadSignature;
        for key in self.keys.iter() {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => return self.caller(data.claims, token),
                Err(e) => {
                    refusal = match e.kind() {
                        ErrorKind::InvalidSignature => Refusal::BadSignature,
                        ErrorKind::ExpiredSignature => Refusal::Expired,
                        ErrorKind::InvalidAudience => Refusal::WrongAudience(self.audience),
                        other => Refusal::Invalid(format!("{other:?}")),
                    };
                    // Only a signature that fails may verify with the next key (rotation).
                    if refusal != Refusal::BadSignature {
                        break;
                    }
                }
            }
        }
        Err(refusal)
    }

    fn caller(&self, claims: Claims, token: &str) -> Result<Caller, Refusal> {
        if claims.sub.is_empty() || claims.sub.len() > MAX_USER_ID_LEN {
            return Err(Refusal::Invalid("the user id is empty or too long".into()));
        }
        Ok(Caller {
            user_id: claims.sub,
            auth_method: claims.amr,
            scopes: claims.scopes,
            request_id: claims.rid,
            project_grant: claims.project,
            assertion: SecretString::from(token.to_string()),
        })
    }
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
