//! Request ids and the request log.
//!
//! The outermost middleware gives every request an id (the caller's `x-request-id` when it is
//! well-formed, otherwise a new one) and a span (the trace of OpenTelemetry export), makes the id
//! visible to error bodies through a task-local, echoes it in the response, counts the request in
//! the metrics, and writes one log line per request: request id, method, route template, status,
//! duration, user id, body bytes, trace id; `info` up to 4xx, `warn` when slower than
//! `SLOW_REQUEST_MS`, `error` with the cause chain for 5xx. Headers and bodies are never logged,
//! so tokens and prompts stay out of the logs.

use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, web};

use service_runtime::telemetry;
use tracing::Instrument;

use crate::identity::Caller;
use crate::metrics::InFlight;
use crate::request_context;
use crate::state::AppState;

/// Header carrying the request id, both ways.
pub const HEADER: &str = "x-request-id";

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

/// Assigns the request id, opens the request's span (continuing an incoming W3C `traceparent`),
/// makes the id visible to error bodies, echoes it, records the request metrics and writes the
/// request log line.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let started = Instant::now();
    let _in_flight = InFlight::start();
    let id = req
        .headers()
        .get(HEADER)
        .and_then(accept_incoming)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let slow = req
        .app_data::<web::Data<AppState>>()
        .map(|s| s.config.slow_request);

    // The route template is known only after routing: the span's name and `http.route` are
    // filled in at the end.
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %req.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = %id,
    );
    if let Some(parent) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
    {
        let state = req
            .headers()
            .get("tracestate")
            .and_then(|v| v.to_str().ok());
        telemetry::extract_w3c(&span, parent, state);
    }

    // Handlers' and guards' errors are rendered inside this scope, so their bodies carry the id.
    // (The request must not be cloned before routing: actix needs to own it to fill in the path.)
    let mut response = request_context::scope(id.clone(), next.call(req))
        .instrument(span.clone())
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
    crate::metrics::record_request(method, &route, status, elapsed);

    telemetry::rename(&span, format!("{method} {route}"));
    span.record("http.route", route.as_str());
    span.record("http.response.status_code", status);
    let _entered = span.enter();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let trace_id = telemetry::current_trace_id();
    let trace_id = trace_id.as_deref().unwrap_or_default();
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
        let cause = response
            .response()
            .extensions()
            .get::<request_context::ErrorCause>()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        tracing::error!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, trace_id, error = cause, "request failed");
    } else if slow.is_some_and(|s| elapsed >= s) {
        tracing::warn!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, trace_id, "slow request");
    } else {
        tracing::info!(request_id = %id, method, route, status, duration_ms, user_id = %user, bytes, trace_id, "request");
    }
    Ok(response)
}
