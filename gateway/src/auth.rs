//! Authentication of `/api/*` callers.
//!
//! Production: session tokens (Clerk's form) signed RS256 or ES256 with keys from a JWKS URL,
//! cached and refetched (throttled) when an unknown `kid` shows up. Development: HS256 with a
//! configured secret. Every other algorithm, `alg: none` included, is refused, and an HS256 token
//! is never checked against a public key, so algorithm confusion has nothing to work with.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::HttpRequest;
use actix_web::http::header;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};

use crate::config::AuthConfig;
use crate::identity::{AuthError, AuthMethod, Caller, Credential, CredentialSource};

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
    jwks: Option<Arc<JwksCache>>,
    algorithms: Vec<Algorithm>,
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
    /// Builds the verifier from configuration; fails when the HS256 secret is not a usable
    /// HMAC key (an empty one: configuration validation refuses short secrets first).
    pub fn new(config: &AuthConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        let hs256 = config
            .hs256_secret
            .as_ref()
            .map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()))
            .transpose()
            .map_err(|e| anyhow::anyhow!("AUTH_HS256_SECRET is not a usable HMAC key: {e}"))?;
        Ok(Self {
            hs256,
            jwks: config.jwks_url.as_ref().map(|url| {
                Arc::new(JwksCache {
                    url: url.clone(),
                    http,
                    ttl: config.jwks_cache_ttl,
                    min_refresh: config.jwks_min_refresh,
                    keys: RwLock::new(KeySet::default()),
                    refreshing: Arc::new(Mutex::new(())),
                })
            }),
            algorithms: config.algorithms.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            authorized_parties: config.authorized_parties.clone(),
            leeway: config.leeway,
        })
    }

    /// The credential of a request: the `Authorization` header's bearer token, else Clerk's
    /// `__session` cookie. Several `Authorization` headers are ambiguous and count as none.
    pub fn credential_of(req: &HttpRequest) -> Option<Credential> {
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
                .filter(|t| !t.is_empty())
                .map(|token| Credential {
                    token,
                    source: CredentialSource::Header,
                });
        }
        req.cookie("__session")
            .map(|c| c.value().to_string())
            .filter(|t| !t.is_empty())
            .map(|token| Credential {
                token,
                source: CredentialSource::Cookie,
            })
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
            alg if self.algorithms.contains(&alg) => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::Algorithm)?;
                let kid = header.kid.as_deref().ok_or(AuthError::UnknownKey)?;
                JwksCache::key(jwks, kid, alg).await?
            }
            _ => return Err(AuthError::Algorithm),
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them: a configured issuer
        // or audience must also be required, or a token without the claim would pass.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
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
    keys: HashMap<String, Jwk>,
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
    /// Held by whoever fetches, so one fetch runs at a time.
    refreshing: Arc<Mutex<()>>,
}

impl JwksCache {
    /// The key for `kid`. A known key is answered from the cache at once, even when the set is
    /// stale: the refresh then runs in the background, so no request with a known `kid` waits on
    /// the issuer. An unknown `kid` waits for one (throttled) fetch, since it may be a new key.
    async fn key(this: &Arc<Self>, kid: &str, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        {
            let set = this.keys.read().await;
            if let Some(key) = set.keys.get(kid) {
                let stale = set.fetched_at.is_none_or(|t| t.elapsed() >= this.ttl);
                let failing = set
                    .last_failure
                    .is_some_and(|t| t.elapsed() < this.min_refresh);
                let answer = key.accepts(alg).then(|| key.key.clone());
                drop(set);
                if stale && !failing {
                    Self::refresh_in_background(this);
                }
                return answer.ok_or(AuthError::Algorithm);
            }
        }
        let _guard = this.refreshing.lock().await;
        let recent = |t: Option<Instant>| t.is_some_and(|t| t.elapsed() < this.min_refresh);
        // Only a fetch of a fresh set for an unknown kid counts against the refetch throttle.
        let (fetch, forced) = {
            let set = this.keys.read().await;
            let stale = set.fetched_at.is_none_or(|t| t.elapsed() >= this.ttl);
            let fetch = !set.keys.contains_key(kid)
                && !recent(set.last_failure)
                && (stale || !recent(set.last_forced));
            (fetch, !stale)
        };
        if fetch {
            this.fetch_and_store(forced).await;
        }
        let set = this.keys.read().await;
        match set.keys.get(kid) {
            Some(key) if key.accepts(alg) => Ok(key.key.clone()),
            Some(_) => Err(AuthError::Algorithm),
            None if set.fetched_at.is_none() => Err(AuthError::KeysUnavailable),
            None => Err(AuthError::UnknownKey),
        }
    }

    /// Starts one refresh of a stale set unless one is running.
    fn refresh_in_background(this: &Arc<Self>) {
        let Ok(guard) = Arc::clone(&this.refreshing).try_lock_owned() else {
            return;
        };
        let this = Arc::clone(this);
        tokio::spawn(async move {
            let _guard = guard;
            let stale = this
                .keys
                .read()
                .await
                .fetched_at
                .is_none_or(|t| t.elapsed() >= this.ttl);
            if stale {
                this.fetch_and_store(false).await;
            }
        });
    }

    async fn fetch_and_store(&self, forced: bool) {
        let fetched = self.fetch().await;
        let mut set = self.keys.write().await;
        if forced {
            set.last_forced = Some(Instant::now());
        }
        match fetched {
            Ok(keys) => {
                set.keys = keys;
                set.fetched_at = Some(Instant::now());
                set.last_failure = None;
            }
            Err(e) => {
                set.last_failure = Some(Instant::now());
                tracing::warn!(error = %e, url = %self.url, "cannot fetch JWKS; keeping cached keys");
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, Jwk>> {
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
            use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                    EllipticCurve::P256 => KeyFamily::EcP256,
                    EllipticCurve::P384 => KeyFamily::EcP384,
                    _ => continue,
                },
                AlgorithmParameters::OctetKeyPair(_) => KeyFamily::Ed25519,
                _ => continue,
            };
            // A key that names its algorithm is used for that one only.
            let declared = jwk
                .common
                .key_algorithm
                .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(
                        kid,
                        Jwk {
                            family,
                            declared,
                            key,
                        },
                    );
                }
                Err(e) => tracing::warn!(kid, error = %e, "skipping unusable JWK"),
            }
        }
        Ok(keys)
    }
}

/// What kind of key a JWK holds, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

/// One usable key of the set.
struct Jwk {
    family: KeyFamily,
    declared: Option<Algorithm>,
    key: DecodingKey,
}

impl Jwk {
    /// Whether a token signed with `alg` may be checked with this key: the key's family must
    /// fit the algorithm, and a key that declares its algorithm serves only that one.
    fn accepts(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let fits = match self.family {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::EcP256 => alg == ES256,
            KeyFamily::EcP384 => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
        };
        fits && self.declared.is_none_or(|d| d == alg)
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
        &EncodingKey::from_secret(secret.as_bytes())?,
    )?)
}
