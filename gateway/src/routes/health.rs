//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::downstream::ServiceHealth;
use crate::problem::ApiError;
use crate::state::AppState;

/// Liveness and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` or `ready`.
    pub status: &'static str,
    /// Downstream checks (readiness only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceHealth>,
}

/// Liveness: the gateway process answers. Checks no dependency.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthStatus)))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok",
        services: Vec::new(),
    })
}

/// Readiness: every downstream service answers its health check. 503 names the ones that do not.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthStatus),
        (status = 503, description = "A downstream is not ready", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let services = state.downstream.readiness(Duration::from_millis(500)).await;
    let failing: Vec<String> = services
        .iter()
        .filter(|s| !s.ready)
        .map(|s| format!("{}: {}", s.name, s.reason.as_deref().unwrap_or("not ready")))
        .collect();
    if failing.is_empty() {
        Ok(HttpResponse::Ok().json(HealthStatus {
            status: "ready",
            services,
        }))
    } else {
        Err(ApiError::unavailable(
            format!("not ready: {}", failing.join("; ")),
            1,
        ))
    }
}

/// Prometheus metrics of this process (text format 0.0.4): HTTP requests, latency, in-flight
/// requests, rate-limit rejections, database pools; in the all-in-one process, every service's too.
/// What each metric means: `docs/operations.md`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(service_runtime::metrics::CONTENT_TYPE)
        .body(service_runtime::metrics::render())
}
