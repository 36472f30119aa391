//! HTTP routes. Each module owns one route group; [`configure`] mounts them all, each `/api/*`
//! scope behind [`crate::guard::guard`] with its rate-limit group.

use actix_web::body::BoxBody;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, mime, web};

use crate::guard::guard;
use crate::limits::RouteGroup;
use crate::problem::ApiError;

pub mod ai;
pub mod auth;
pub mod deploy;
pub mod docs;
pub mod health;
pub mod projects;
pub mod sandbox;

/// The operations endpoints: liveness, readiness and metrics (on the ops listener when
/// `GATEWAY_METRICS_ADDR` moves them off the public one).
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
        .service(health::ready)
        .service(health::metrics);
}

/// Mounts every route, and the JSON, query and path error handling, on an app; `/ready` and
/// `/metrics` only when `with_ops` (they are not on the public listener when served apart).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize, with_ops: bool) {
    if with_ops {
        cfg.service(health::ready).service(health::metrics);
    }
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .content_type_required(true)
            .content_type(|mime| mime.subtype() == mime::JSON || mime.suffix() == Some(mime::JSON))
            .error_handler(move |e, _| json_error(e, max_body_bytes).into()),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e).into()))
    .service(health::health)
    .service(docs::openapi_json)
    .service(docs::docs_page)
    .service(
        web::scope("/api/projects")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Api, req, next)
            }))
            .configure(projects::configure),
    )
    .service(
        web::scope("/api/auth")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Auth, req, next)
            }))
            .configure(auth::configure),
    )
    .service(
        web::scope("/api/ai")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Ai, req, next)
            }))
            .configure(ai::configure),
    )
    .service(
        web::scope("/api/sandbox")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Sandbox, req, next)
            }))
            .configure(sandbox::configure),
    )
    .service(
        web::scope("/api/deploy")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Deploy, req, next)
            }))
            .configure(deploy::configure_deploy),
    )
    .service(
        web::scope("/api/deployments")
            .wrap(from_fn(|req, next: Next<BoxBody>| {
                guard(RouteGroup::Deploy, req, next)
            }))
            .configure(deploy::configure_deployments),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}; see /openapi.json",
        req.method(),
        req.path()
    ))
}

impl actix_web::Responder for ApiError {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

fn json_error(e: JsonPayloadError, limit: usize) -> ApiError {
    match e {
        JsonPayloadError::ContentType => ApiError::unsupported_media_type(),
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::payload_too_large(limit)
        }
        JsonPayloadError::Deserialize(e) => {
            if e.is_data() {
                ApiError::bad_request(format!(
                    "the JSON body does not match the expected shape: {e}"
                ))
            } else {
                ApiError::bad_request(format!("the body is not valid JSON: {e}"))
            }
        }
        JsonPayloadError::Serialize(e) => ApiError::internal(e),
        JsonPayloadError::Payload(e) => ApiError::bad_request(format!("cannot read the body: {e}")),
        other => ApiError::bad_request(format!("cannot read the JSON body: {other}")),
    }
}

fn query_error(e: QueryPayloadError) -> ApiError {
    ApiError::bad_request(format!("invalid query string: {e}"))
}

fn path_error(e: PathError) -> ApiError {
    ApiError::bad_request(format!("invalid path: {e}"))
}

/// Reads a `limit` query value by hand, so that a value that is not a whole number gets an error
/// naming `limit` (the query deserializer's own errors name no parameter).
pub fn deserialize_limit<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let raw: Option<String> = Option::deserialize(deserializer)?;
    raw.map(|raw| {
        raw.trim().parse::<i64>().map_err(|_| {
            serde::de::Error::custom(format!(
                "`limit` must be a whole number from 1 to 100, got {raw:?}"
            ))
        })
    })
    .transpose()
}

/// The gRPC page size for a `limit` query value: 0 (the service's default) when absent, else
/// 1 to 100.
pub fn page_size(limit: Option<i64>) -> Result<i32, ApiError> {
    match limit {
        None => Ok(0),
        Some(n @ 1..=100) => Ok(n as i32),
        Some(_) => Err(ApiError::invalid_field(
            "limit",
            "must be between 1 and 100",
        )),
    }
}

/// Maps a listing's gRPC error: a refused page token becomes an error about the `cursor`
/// parameter, in the HTTP API's own words (services call it `pageToken` / `nextPageToken`).
pub fn list_error(status: &tonic::Status, service: &str) -> ApiError {
    let error = ApiError::from_status(status, service);
    if error.field_errors().iter().any(|e| e.field == "pageToken") {
        ApiError::invalid_field(
            "cursor",
            "is not a cursor this API gave you for this listing (it is malformed, was changed, or \
             belongs to another user); pass `nextCursor` of the previous page unchanged, or leave \
             it out for the first page",
        )
    } else {
        error
    }
}

/// Formats Unix milliseconds as RFC 3339.
pub use crate::timestamp::rfc3339 as timestamp;
