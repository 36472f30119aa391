//! Headers every response carries, whatever produced it (a handler, an error, a guard, an event
//! stream, CORS): no MIME sniffing, no referrer, no framing, a Content-Security-Policy (strict for
//! the API; a page sets its own, as `/docs` does), `Cache-Control: no-store` on `/api` answers
//! (they carry user data), and `Strict-Transport-Security` when `HSTS_MAX_AGE_SECS` is set.
//! Also the request-header budget: requests whose headers are larger in total than
//! `MAX_HEADER_BYTES` get 431 before anything else reads them.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};

use crate::problem::ApiError;
use crate::state::AppState;

/// The policy of every API answer: it is data, never a page, so it may load nothing and be
/// framed by nobody.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Adds the security headers to the response of `req`.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let hsts = state.as_ref().and_then(|s| s.config.edge.hsts_max_age);
    let api = req.path().starts_with("/api/") || req.path() == "/api";
    let mut response = next.call(req).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(max_age) = hsts
        && let Ok(value) =
            HeaderValue::from_str(&format!("max-age={}; includeSubDomains", max_age.as_secs()))
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value);
    }
    Ok(response)
}

/// Refuses requests whose headers (names, values and their separators, as on the wire) exceed
/// `MAX_HEADER_BYTES` with 431, like common proxies do at 8-16 KiB.
pub async fn header_budget(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let limit = req
        .app_data::<web::Data<AppState>>()
        .map_or(16 * 1024, |s| s.config.edge.max_header_bytes);
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > limit {
        let error = ApiError::custom(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header-fields-too-large",
            "Request header fields too large",
            format!(
                "the request headers total {size} bytes, more than the limit of {limit}; send \
                 fewer or smaller headers (large cookies are the usual cause)"
            ),
        );
        let (req, _) = req.into_parts();
        return Ok(ServiceResponse::new(req, error.error_response()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
