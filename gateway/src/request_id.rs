//! Request ids and the request log.
//!
//! The outermost middleware gives every request an id (the caller's `x-request-id` when it is
//! well-formed, otherwise a new one), makes it visible to error bodies through a task-local, echoes
//! it in the response, and writes one log line per request.

use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use crate::auth::Caller;
use crate::state::AppState;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Header carrying the request id, both ways.
pub const HEADER: &str = "x-request-id";

/// The id of the request being handled, when called from within one.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request id stored in a request's extensions by [`middleware`].
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn accept_incoming(value: &HeaderValue) -> Option<String> {
    let id = value.to_str().ok()?;
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| id.to_string())
}

/// Assigns the request id, makes it visible to error bodies, echoes it, and logs the request.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(accept_incoming)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let slow = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.config.slow_request);

    // Handlers' and guards' errors are rendered inside this scope, so their bodies carry the id.
    // (The request must not be cloned before routing: actix needs to own it to fill in the path.)
    let mut response = REQUEST_ID
        .scope(id.clone(), next.call(req))
        .await?
        .map_into_boxed_body();

    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(HEADER), value);
    }

    let elapsed = started.elapsed();
    let request = response.request();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let user = request
        .extensions()
        .get::<Caller>()
        .map(|c| c.user_id.clone())
        .unwrap_or_default();
    let status = response.status().as_u16();
    let bytes = match response.response().body().size() {
        BodySize::Sized(n) => n,
        _ => 0,
    };
    let method = request.method().as_str();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, "request");
    } else if slow.is_some_and(|s| elapsed >= s) {
        tracing::warn!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, "slow request");
    } else {
        tracing::info!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, "request");
    }
    Ok(response)
}
