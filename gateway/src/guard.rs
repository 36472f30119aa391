//! The middleware in front of every `/api/*` route group: authenticate, then spend one request of
//! the caller's budget in the group (per user; per client IP when authentication failed, so that
//! guessing tokens is limited too), then add the `RateLimit-*` headers.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use crate::auth::{AuthError, AuthMethod, Authenticator};
use crate::keys::KEY_PREFIX;
use crate::limits::{Decision, RouteGroup};
use crate::problem::ApiError;
use crate::state::AppState;

/// Authenticates and rate-limits a request of `group`.
pub async fn guard(
    group: RouteGroup,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(req.error_response(ApiError::internal("application state missing")));
    };
    let auth = match Authenticator::token_of(req.request()) {
        Some(token) if token.starts_with(KEY_PREFIX) => state.keys.authenticate(&token).await,
        Some(token) => state.auth.authenticate(&token).await,
        None => Err(AuthError::Missing),
    };
    let key = match &auth {
        Ok(caller) => format!("user:{}", caller.user_id),
        Err(_) => format!(
            "ip:{}",
            req.peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default()
        ),
    };
    let decision = match state.limiter.check(group, &key).await {
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
        Err(e) => {
            return Ok(with_headers(
                req.error_response(ApiError::from(e)),
                &decision,
            ));
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
