//! HTTP routes. Each module owns one route group; [`configure`] mounts them all, each `/api/*`
//! scope behind [`crate::guard::guard`] with its rate-limit group, and answers a known path with
//! a method it does not serve with 405 and `Allow`.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::{StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, ResponseError, mime, web};

use crate::guard::guard;
use crate::limits::RouteGroup;
use crate::problem::ApiError;

pub mod ai;
pub mod auth;
mod body_schema;
pub mod deploy;
pub mod deploy_targets;
pub mod docs;
pub mod health;
pub mod integrations;
pub mod projects;
pub mod sandbox;
pub mod schema;

/// The operations endpoints: liveness, readiness and metrics (on the ops listener when
/// `GATEWAY_METRICS_ADDR` moves them off the public one).
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/health")
            .get(health::health)
            .wrap(from_fn(method_not_allowed)),
    );
    ops_routes(cfg);
}

/// `/ready` and `/metrics`.
fn ops_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/ready")
            .get(health::ready)
            .wrap(from_fn(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .get(health::metrics)
            .wrap(from_fn(method_not_allowed)),
    );
}

/// Mounts every route, and the JSON, query and path error handling, on an app.
///
/// Every path is one actix resource holding the routes of all its methods, so a method the path
/// does not serve gets actix's 405 with an `Allow` header derived from those routes (see
/// [`method_not_allowed`]); an unknown path gets 404. Under `/api` the guard runs first: a wrong
/// method is answered 405 only to an authenticated caller within the group's rate limit, and
/// otherwise gets the guard's 401/403/429 like any other request there, so that nobody learns the
/// route table without credentials and every request counts against the budget.
///
/// `/ready` and `/metrics` are mounted only when `with_ops` (they are not on the public listener
/// when `GATEWAY_METRICS_ADDR` serves them apart).
pub fn configure(cfg: &mut web::ServiceConfig, max_body_bytes: usize, with_ops: bool) {
    if with_ops {
        ops_routes(cfg);
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
    .service(
        web::resource("/health")
            .get(health::health)
            .wrap(from_fn(method_not_allowed)),
    )
    .service(
        web::resource("/openapi.json")
            .get(docs::openapi_json)
            .wrap(from_fn(method_not_allowed)),
    )
    .service(
        web::resource("/docs")
            .get(docs::docs_page)
            .wrap(from_fn(method_not_allowed)),
    );
    // Before `/api/projects`, whose scope would take the path otherwise: deploy data, deploy
    // group.
    api_scope(
        cfg,
        "/api/projects/{id}/deployments",
        RouteGroup::Deploy,
        deploy_targets::configure,
    );
    api_scope(cfg, "/api/projects", RouteGroup::Api, projects::configure);
    api_scope(cfg, "/api/auth", RouteGroup::Auth, auth::configure);
    api_scope(cfg, "/api/ai", RouteGroup::Ai, ai::configure);
    api_scope(cfg, "/api/sandbox", RouteGroup::Sandbox, sandbox::configure);
    api_scope(
        cfg,
        "/api/deploy",
        RouteGroup::Deploy,
        deploy::configure_deploy,
    );
    api_scope(
        cfg,
        "/api/deployments",
        RouteGroup::Deploy,
        deploy::configure_deployments,
    );
    api_scope(
        cfg,
        "/api/integrations",
        RouteGroup::Integrations,
        integrations::configure,
    );
    cfg.default_service(web::to(not_found));
}

/// Mounts the routes of one `/api` group under `path`, behind the guard of `group`.
fn api_scope(
    cfg: &mut web::ServiceConfig,
    path: &str,
    group: RouteGroup,
    routes: fn(&mut web::ServiceConfig),
) {
    cfg.service(
        web::scope(path)
            .wrap(from_fn(method_not_allowed))
            // Registered last, so it runs first: see `configure` on 405 after authentication.
            .wrap(from_fn(move |req, next: Next<BoxBody>| {
                guard(group, req, next)
            }))
            .configure(routes),
    );
}

/// Answers a method the resource does not serve with a 405 problem. actix has already answered
/// it with an empty 405 whose `Allow` lists the methods of the resource's routes; this keeps that
/// header and gives the body every other error has.
async fn method_not_allowed(
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let response = next.call(req).await?;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return Ok(response);
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let (req, _) = response.into_parts();
    let allowed = allow
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let error = ApiError::custom(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!(
            "{} is not a method of {}; it answers {allowed}",
            req.method(),
            req.path()
        ),
    );
    let mut response = error.error_response();
    if let Some(allow) = allow {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(ServiceResponse::new(req, response))
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

/// Reads an optional whole number of a JSON body as JSON Schema's `integer` means it: `3` and
/// `3.0` alike (generated clients send either); a fraction or a value beyond `i64` is refused.
pub fn whole_number<'de, D>(deserializer: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    use serde::Deserialize;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    match number.as_f64() {
        // `i64::MAX as f64` rounds up to 2^63, itself out of range.
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => {
            Ok(Some(f as i64))
        }
        _ => Err(serde::de::Error::custom(format!(
            "expected a whole number from {} to {}, got {number}",
            i64::MIN,
            i64::MAX
        ))),
    }
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

/// Formats Unix milliseconds as RFC 3339.
pub use crate::timestamp::rfc3339 as timestamp;

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole_number")]
        n: Option<i64>,
    }

    fn n(json: &str) -> Result<Option<i64>, serde_json::Error> {
        serde_json::from_str::<Body>(json).map(|b| b.n)
    }

    #[test]
    fn whole_numbers_are_integers_however_spelled() {
        assert_eq!(n("{}").unwrap(), None);
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n(r#"{"n": 55}"#).unwrap(), Some(55));
        assert_eq!(n(r#"{"n": 55.0}"#).unwrap(), Some(55));
        assert_eq!(n(r#"{"n": -3e2}"#).unwrap(), Some(-300));
        assert_eq!(n(r#"{"n": -9223372036854775808}"#).unwrap(), Some(i64::MIN));
        for bad in ["55.5", "1e19", "9223372036854775808", "\"5\"", "true"] {
            assert!(n(&format!(r#"{{"n": {bad}}}"#)).is_err(), "{bad}");
        }
    }
}
