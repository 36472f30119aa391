//! The middleware in front of every `/api/*` route group: CSRF defence for cookie sessions,
//! authenticate, then spend one request of the caller's budget in the group (per user; per client
//! IP when authentication failed, so that guessing tokens is limited too), then add the
//! `RateLimit-*` headers.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use crate::auth::Authenticator;
use crate::identity::{AuthError, AuthMethod, CredentialSource};
use crate::keys::KEY_PREFIX;
use crate::limits::{Decision, RouteGroup};
use crate::problem::ApiError;
use crate::state::AppState;

/// Authenticates and rate-limits a request of `group`.
///
/// Order matters for what an attacker can make the gateway do: a request is charged to its
/// client IP until it is known to belong to a user, and a client IP whose budget is used up is
/// refused before its API key is looked up, so floods of made-up credentials cost no database
/// work (keys recently found unknown are refused from memory as well).
pub async fn guard(
    group: RouteGroup,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::internal("application state missing")));
    };
    let client = state
        .client_ip
        .of(&req)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let ip_key = format!("ip:{client}");
    let credential = Authenticator::credential_of(req.request());

    let csrf = match &credential {
        Some(c) if c.source == CredentialSource::Cookie && !is_safe(req.method()) => {
            csrf_check(&req, &state).err()
        }
        _ => None,
    };
    let auth = match (&credential, csrf) {
        (_, Some(refused)) => Err(Refusal::Csrf(refused)),
        (None, None) => Err(Refusal::Auth(AuthError::Missing)),
        (Some(c), None) if c.token.starts_with(KEY_PREFIX) => {
            if let Some(decision) = state.limiter.known_exhausted(group, &ip_key) {
                state.limiter.note_rejection(group);
                let response = req.error_response(ApiError::rate_limited(
                    group.name(),
                    decision.retry_after_secs,
                ));
                return Ok(with_headers(response, &decision));
            }
            state
                .keys
                .authenticate(&c.token)
                .await
                .map_err(Refusal::Auth)
        }
        (Some(c), None) => state
            .auth
            .authenticate(&c.token)
            .await
            .map_err(Refusal::Auth),
    };
    let key = match &auth {
        Ok(caller) => format!("user:{}", caller.user_id),
        Err(_) => ip_key,
    };
    let decision = match state.limiter.check_and_remember(group, &key).await {
        Ok(decision) => decision,
        Err(unavailable) => {
            let error = ApiError::unavailable(
                "the rate limiter's shared store (Redis) does not answer, and this gateway is \
                 configured to refuse requests until it does; try again shortly",
                unavailable.retry_after_secs,
            );
            return Ok(req.error_response(error));
        }
    };
    if !decision.allowed {
        state.limiter.note_rejection(group);
        let response = req.error_response(ApiError::rate_limited(
            group.name(),
            decision.retry_after_secs,
        ));
        return Ok(with_headers(response, &decision));
    }
    let caller = match auth {
        Ok(caller) => caller,
        Err(refusal) => {
            let error = match refusal {
                Refusal::Auth(e) => ApiError::from(e),
                Refusal::Csrf(e) => e,
            };
            return Ok(with_headers(req.error_response(error), &decision));
        }
    };
    if let AuthMethod::ApiKey { scopes, .. } = &caller.method
        && let Err(needed) = scopes.permit(group, req.method())
    {
        let error = ApiError::forbidden(format!(
            "this API key lacks the `{}` scope needed here",
            serde_json::to_value(needed)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ));
        return Ok(with_headers(req.error_response(error), &decision));
    }
    req.extensions_mut().insert(caller);
    let response = next.call(req).await?;
    Ok(with_headers(response, &decision))
}

/// Why a request has no caller.
enum Refusal {
    Auth(AuthError),
    Csrf(ApiError),
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// CSRF defence for cookie authentication: the browser attaches the `__session` cookie to any
/// request to this site, including one a foreign page makes, so an unsafe method is accepted
/// only when `Origin` is on the allow list or, without `Origin`, the browser says the request
/// is same-origin (`Sec-Fetch-Site`). Bearer tokens need none of this: a page must add them.
fn csrf_check(req: &ServiceRequest, state: &AppState) -> Result<(), ApiError> {
    let header = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let allowed = match (
        header(header::ORIGIN),
        header(header::HeaderName::from_static("sec-fetch-site")),
    ) {
        (Some(origin), _) => crate::cors::is_allowed(&state.config.edge, &origin),
        (None, Some(site)) => site.eq_ignore_ascii_case("same-origin"),
        (None, None) => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "a {} authenticated by the session cookie must come from an allowed origin \
             (CORS_ALLOWED_ORIGINS) or the same origin; send the token as \
             `Authorization: Bearer <token>` instead",
            req.method()
        )))
    }
}

fn with_headers(mut response: ServiceResponse<BoxBody>, d: &Decision) -> ServiceResponse<BoxBody> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", d.reset_secs.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}
