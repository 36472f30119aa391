//! Who is calling: the caller the guard established (user id and how they proved it), the
//! scopes an API key carries, and why a credential was refused. Authentication (`auth`, session
//! tokens) and API keys (`keys`) both produce these; neither depends on the other.

use std::collections::BTreeSet;

use actix_web::HttpRequest;
use actix_web::http::Method;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::limits::RouteGroup;
use crate::problem::ApiError;

/// Where a request's credential came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// `Authorization: Bearer …`: a page must add it on purpose, so no cross-site request
    /// carries it by itself.
    Header,
    /// The `__session` cookie, which a browser attaches by itself: unsafe methods need a CSRF
    /// check.
    Cookie,
}

/// A request's credential: a session token or a personal API key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The token itself.
    pub token: String,
    /// Where it came from.
    pub source: CredentialSource,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("token", &"[redacted]")
            .field("source", &self.source)
            .finish()
    }
}

/// Who is calling, as established by the guard (`crate::guard`).
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
        scopes: Scopes,
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

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read projects, files, deployments and usage.
    Read,
    /// Read and change projects and files (implies `read`).
    Write,
    /// Call the AI operations.
    Ai,
    /// Run code in the sandbox.
    Sandbox,
    /// Create, cancel and roll back deployments.
    Deploy,
}

impl Scope {
    fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Ai => "ai",
            Self::Sandbox => "sandbox",
            Self::Deploy => "deploy",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "read" => Self::Read,
            "write" => Self::Write,
            "ai" => Self::Ai,
            "sandbox" => Self::Sandbox,
            "deploy" => Self::Deploy,
            _ => return None,
        })
    }
}

/// A set of scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Everything: what a session token may do, and a key created without `scopes`.
    pub fn full() -> Self {
        Self(
            [Scope::Write, Scope::Ai, Scope::Sandbox, Scope::Deploy]
                .into_iter()
                .collect(),
        )
    }

    /// The given scopes.
    pub fn of(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self(scopes.into_iter().collect())
    }

    /// The scopes as a list, `write` implying `read`.
    pub fn list(&self) -> Vec<Scope> {
        let mut all = self.0.clone();
        if all.contains(&Scope::Write) {
            all.insert(Scope::Read);
        }
        all.into_iter().collect()
    }

    /// The scopes' names as [`Scopes::list`] gives them (what the services' assertions carry).
    pub fn names(&self) -> Vec<String> {
        self.list()
            .into_iter()
            .map(|s| s.name().to_string())
            .collect()
    }

    fn has(&self, scope: Scope) -> bool {
        self.0.contains(&scope) || (scope == Scope::Read && self.0.contains(&Scope::Write))
    }

    /// Checks that a request of `group` with `method` is allowed; the error names the scope needed.
    pub fn permit(&self, group: RouteGroup, method: &Method) -> Result<(), Scope> {
        let reading = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let needed = match group {
            RouteGroup::Auth => return Ok(()),
            RouteGroup::Api if reading => Scope::Read,
            RouteGroup::Api => Scope::Write,
            RouteGroup::Ai => Scope::Ai,
            RouteGroup::Sandbox => Scope::Sandbox,
            RouteGroup::Deploy if reading => Scope::Read,
            RouteGroup::Deploy => Scope::Deploy,
            // Tokens of the user's provider accounts: deploy scope, reading included.
            RouteGroup::Integrations => Scope::Deploy,
        };
        let read_alternative = reading
            && matches!(group, RouteGroup::Ai | RouteGroup::Sandbox)
            && self.has(Scope::Read);
        if self.has(needed) || read_alternative {
            Ok(())
        } else {
            Err(needed)
        }
    }

    /// The scopes as stored: names joined by commas.
    pub(crate) fn to_text(&self) -> String {
        self.0
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Scopes as stored; unknown names are ignored.
    pub(crate) fn from_text(text: &str) -> Self {
        Self(text.split(',').filter_map(Scope::parse).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_gate_groups_and_methods() {
        let read = Scopes::of([Scope::Read]);
        assert!(read.permit(RouteGroup::Api, &Method::GET).is_ok());
        assert_eq!(
            read.permit(RouteGroup::Api, &Method::POST),
            Err(Scope::Write)
        );
        assert_eq!(read.permit(RouteGroup::Ai, &Method::POST), Err(Scope::Ai));
        assert!(read.permit(RouteGroup::Ai, &Method::GET).is_ok());
        assert_eq!(
            read.permit(RouteGroup::Deploy, &Method::POST),
            Err(Scope::Deploy)
        );
        let full = Scopes::full();
        for group in RouteGroup::ALL {
            for method in [Method::GET, Method::POST, Method::DELETE] {
                assert!(full.permit(group, &method).is_ok());
            }
        }
        let no_ai = Scopes::of([Scope::Write, Scope::Sandbox]);
        assert_eq!(no_ai.permit(RouteGroup::Ai, &Method::POST), Err(Scope::Ai));
        assert!(no_ai.permit(RouteGroup::Api, &Method::PATCH).is_ok());
        assert_eq!(Scopes::from_text(&full.to_text()), full);
        assert_eq!(full.list().first(), Some(&Scope::Read));
    }
}
