//! Cross-origin access for browsers, by actix-cors, from the `CORS_ALLOWED_ORIGINS` allow list.
//!
//! The CORS middleware sits outside every route group, so a preflight (`OPTIONS` with `Origin`
//! and `Access-Control-Request-Method`) is answered before authentication and rate limiting: 204
//! with the allowed methods and headers and `Access-Control-Max-Age` for an allowed origin, 403
//! problem+json for any other. Actual responses carry `Access-Control-Allow-Origin` (with
//! credentials) and `Vary: Origin` for allowed origins, and the headers a frontend reads are
//! exposed; a request from an origin not on the list gets no CORS headers, so the browser keeps
//! the answer from the page.

use actix_cors::{Cors, CorsError};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError};

use crate::config::EdgeConfig;
use crate::problem::ApiError;

/// Methods a browser may use cross-origin.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// Request headers a page may send cross-origin (beyond the CORS-safelisted ones).
const REQUEST_HEADERS: [&str; 10] = [
    "authorization",
    "content-type",
    "accept",
    "last-event-id",
    "if-match",
    "if-none-match",
    "idempotency-key",
    "x-request-id",
    "traceparent",
    "tracestate",
];

/// Response headers a page may read: the request id to quote, rate-limit state, concurrency
/// tokens, where a created resource lives, and the AI routes' timings.
pub const EXPOSED_HEADERS: [&str; 8] = [
    "x-request-id",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "retry-after",
    "etag",
    "location",
    "server-timing",
];

/// The CORS middleware for `edge` (built per worker).
pub fn middleware(edge: &EdgeConfig) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(METHODS.iter().map(Method::as_str))
        .allowed_headers(REQUEST_HEADERS)
        .expose_headers(EXPOSED_HEADERS)
        .supports_credentials()
        .max_age(Some(edge.cors_max_age.as_secs() as usize))
        // A foreign origin is not an error for non-browser clients: its answer just carries no
        // CORS headers, and the browser withholds it from the page.
        .block_on_origin_mismatch(false);
    for origin in &edge.allowed_origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Whether `origin` (an `Origin` header value) is on the allow list.
pub fn is_allowed(edge: &EdgeConfig, origin: &str) -> bool {
    edge.allowed_origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
}

/// Wraps the CORS middleware: an accepted preflight answers 204 (actix-cors says 200), and a
/// refused one is problem+json like every other error (actix-cors answers plain text).
pub async fn preflight_answers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let preflight = req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = next.call(req).await?.map_into_boxed_body();
    if let Some(cors) = response
        .response()
        .error()
        .and_then(|e| e.as_error::<CorsError>())
    {
        let error = match cors {
            CorsError::OriginNotAllowed => ApiError::forbidden(
                "this origin may not call the API from a browser; an operator adds it to \
                 CORS_ALLOWED_ORIGINS",
            ),
            CorsError::MethodNotAllowed => ApiError::forbidden(format!(
                "cross-origin requests may use {}",
                METHODS.map(|m| m.to_string()).join(", ")
            )),
            CorsError::HeadersNotAllowed => ApiError::forbidden(format!(
                "cross-origin requests may send these headers: {}",
                REQUEST_HEADERS.join(", ")
            )),
            other => ApiError::bad_request(format!("invalid CORS request: {other}")),
        };
        let vary = response.headers().get(header::VARY).cloned();
        let (req, _) = response.into_parts();
        let mut refused = ServiceResponse::new(req, error.error_response());
        if let Some(vary) = vary {
            refused.headers_mut().insert(header::VARY, vary);
        }
        return Ok(refused);
    }
    if preflight && response.status() == StatusCode::OK {
        *response.response_mut().status_mut() = StatusCode::NO_CONTENT;
    }
    Ok(response)
}
