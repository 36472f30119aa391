//! Authentication of `/api/*` callers.
//!
//! Production: session tokens (Clerk's form) signed RS256 or ES256 with keys from a JWKS URL,
//! cached and refetched (throttled) when an unknown `kid` shows up. Development: HS256 with a
//! configured secret. Every other algorithm, `alg: none` included, is refused, and an HS256 token
//! is never checked against a public key, so algorithm confusion has nothing to work with.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::config::AuthConfig;
use crate::problem::ApiError;

/// Who is calling, as established by [`Authenticator::authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user id (`sub` of the token).
    pub user_id: String,
    /// How the caller proved it.
    pub method: AuthMethod,
}

impl actix_web::FromRequest for Caller {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        use actix_web::HttpMessage;
        std::future::ready(
            req.extensions()
                .get::<Caller>()
                .cloned()
                .ok_or_else(|| ApiError::from(AuthError::Missing)),
        )
    }
}

/// How a caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// A session JWT: may do everything, including managing API keys.
    Jwt,
    /// A personal API key, limited to its scopes.
    ApiKey {
        /// The key's id.
        id: String,
        /// What it may do.
        scopes: crate::keys::Scopes,
    },
}

impl AuthMethod {
    /// The method's name in responses.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey { .. } => "apiKey",
        }
    }
}

/// Why a token was refused. The message is safe to show the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credentials at all.
    #[error("missing credentials: send `Authorization: Bearer <token>`")]
    Missing,
    /// Not a well-formed JWT.
    #[error("the token is malformed")]
    Malformed,
    /// The algorithm is not accepted.
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` is in the past.
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is absent.
    #[error("the token lacks the required claim `{0}`")]
    MissingClaim(String),
    /// `iss` does not match.
    #[error("the token's issuer is not accepted")]
    Issuer,
    /// `aud` does not match.
    #[error("the token's audience is not accepted")]
    Audience,
    /// `azp` is absent or not allowed.
    #[error("the token's authorized party is not accepted")]
    AuthorizedParty,
    /// No key with the token's `kid`.
    #[error("the token's signing key is unknown")]
    UnknownKey,
    /// Keys could not be fetched and none are cached.
    #[error("signing keys are unavailable; try again shortly")]
    KeysUnavailable,
    /// An API key that does not exist or was revoked.
    #[error("the API key is invalid or revoked")]
    KeyInvalid,
    /// An API key past its expiry.
    #[error("the API key has expired")]
    KeyExpired,
    /// The key table cannot be read.
    #[error("API keys cannot be verified right now; try again shortly")]
    KeyStoreUnavailable,
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable | AuthError::KeyStoreUnavailable => {
                ApiError::unavailable(e.to_string(), 5)
            }
            other => ApiError::unauthorized(other.to_string()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    azp: Option<String>,
}

/// Verifies session tokens.
pub struct Authenticator {
    hs256: Option<DecodingKey>,
    jwks: Option<JwksCache>,
    issuer: Option<String>,
    audience: Option<String>,
    authorized_parties: Vec<String>,
    leeway: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| &j.url))
            .field("issuer", &self.issuer)
            .finish()
    }
}

impl Authenticator {
    /// Builds the verifier from configuration.
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> Self {
        Self {
            hs256: config
                .hs256_secret
                .as_ref()
                .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes())),
            jwks: config.jwks_url.as_ref().map(|url| JwksCache {
                url: url.clone(),
                http,
                ttl: config.jwks_cache_ttl,
                min_refresh: config.jwks_min_refresh,
                keys: RwLock::new(KeySet::default()),
                refreshing: Mutex::new(()),
            }),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            authorized_parties: config.authorized_parties.clone(),
            leeway: config.leeway,
        }
    }

    /// The bearer token of a request: the `Authorization` header, else Clerk's `__session` cookie.
    /// Several `Authorization` headers are ambiguous and count as none.
    pub fn token_of(req: &HttpRequest) -> Option<String> {
        let mut headers = req.headers().get_all(header::AUTHORIZATION);
        if let Some(value) = headers.next() {
            if headers.next().is_some() {
                return None;
            }
            let value = value.to_str().ok()?.trim();
            let (scheme, token) = value.split_once(' ')?;
            return scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
                .filter(|t| !t.is_empty());
        }
        req.cookie("__session").map(|c| c.value().to_string())
    }

    /// Verifies `token`: signature first, then claims.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header
            .typ
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
        {
            return Err(AuthError::Malformed);
        }
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.clone().ok_or(AuthError::Algorithm)?,
            Algorithm::RS256 | Algorithm::ES256 => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::Algorithm)?;
                let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
                jwks.key(kid, header.alg).await?
            }
            _ => return Err(AuthError::Algorithm),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &self.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(map_jwt_error)?;
        let claims = data.claims;
        let now = unix_now();
        if claims
            .iat
            .is_some_and(|iat| iat > now + self.leeway.as_secs() as i64)
        {
            return Err(AuthError::NotYetValid);
        }
        if !self.authorized_parties.is_empty() {
            let azp = claims.azp.as_deref().ok_or(AuthError::AuthorizedParty)?;
            if !self.authorized_parties.iter().any(|p| p == azp) {
                return Err(AuthError::AuthorizedParty);
            }
        }
        if claims.sub.is_empty() || claims.sub.len() > 256 {
            return Err(AuthError::MissingClaim("sub".into()));
        }
        Ok(Caller {
            user_id: claims.sub,
            method: AuthMethod::Jwt,
        })
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidSignature => AuthError::Signature,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
        _ => AuthError::Malformed,
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[derive(Default)]
struct KeySet {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch caused by an unknown `kid` (throttled, so unknown kids cannot flood the issuer).
    last_forced: Option<Instant>,
    /// Last failed fetch (throttled too, so an unreachable issuer is not hammered).
    last_failure: Option<Instant>,
}

struct JwksCache {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    min_refresh: Duration,
    keys: RwLock<KeySet>,
    refreshing: Mutex<()>,
}

impl JwksCache {
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        {
            let set = self.keys.read().await;
            let fresh = set.fetched_at.is_some_and(|t| t.elapsed() < self.ttl);
            if fresh && let Some((key_alg, key)) = set.keys.get(kid) {
                return check_alg(*key_alg, alg).map(|()| key.clone());
            }
        }
        let _guard = self.refreshing.lock().await;
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < self.min_refresh);
        let (fetch, forced) = {
            let set = self.keys.read().await;
            let stale = set.fetched_at.is_none_or(|t| t.elapsed() >= self.ttl);
            let unknown = !set.keys.contains_key(kid);
            let failing = recent(set.last_failure);
            if stale && !failing {
                (true, false)
            } else if unknown && !failing && !recent(set.last_forced) {
                (true, true)
            } else {
                (false, false)
            }
        };
        if fetch {
            let fetched = self.fetch().await;
            let mut set = self.keys.write().await;
            if forced {
                set.last_forced = Some(Instant::now());
            }
            match fetched {
                Ok(keys) => {
                    set.keys = keys;
                    set.fetched_at = Some(Instant::now());
                }
                Err(e) => {
                    set.last_failure = Some(Instant::now());
                    tracing::warn!(error = %e, url = %self.url, "cannot fetch JWKS; keeping cached keys");
                }
            }
        }
        let set = self.keys.read().await;
        match set.keys.get(kid) {
            Some((key_alg, key)) => check_alg(*key_alg, alg).map(|()| key.clone()),
            None if set.fetched_at.is_none() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::UnknownKey),
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, (Algorithm, DecodingKey)>> {
        let set: JwkSet = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            use jsonwebtoken::jwk::AlgorithmParameters;
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid, (alg, key));
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping unusable JWK"),
            }
        }
        Ok(keys)
    }
}

fn check_alg(key_alg: Algorithm, token_alg: Algorithm) -> Result<(), AuthError> {
    if key_alg == token_alg {
        Ok(())
    } else {
        Err(AuthError::Algorithm)
    }
}

#[derive(Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    iat: i64,
    exp: i64,
}

/// Issues an HS256 development token for `user_id`, valid for `ttl`.
pub fn issue_dev_token(secret: &str, user_id: &str, ttl: Duration) -> anyhow::Result<String> {
    let now = unix_now();
    let claims = DevClaims {
        sub: user_id,
        iat: now,
        exp: now + ttl.as_secs() as i64,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
