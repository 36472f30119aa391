//! Liveness, readiness and metrics.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::downstream::{ServiceHealth, ServiceState};
use crate::problem::ApiError;
use crate::state::AppState;

/// Liveness and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `ok` (liveness), `ready`, or `degraded` (readiness: every service answers, some report
    /// that they cannot do their work; their routes answer 503 with the reason).
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

/// Readiness: every downstream service answers its health check. 200 `ready` when all serve, 200
/// `degraded` naming those that answer but cannot do their work (sandbox-service without a
/// Docker engine: the rest of the platform works), 503 naming the ones that do not answer.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready, or degraded (`status` and each service's `state` and `reason` say which)", body = HealthStatus),
        (status = 503, description = "A downstream does not answer", body = crate::problem::Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let services = state.downstream.readiness(Duration::from_millis(500)).await;
    let describe = |wanted: ServiceState| -> Vec<String> {
        services
            .iter()
            .filter(|s| s.state == wanted)
            .map(|s| format!("{}: {}", s.name, s.reason.as_deref().unwrap_or("not ready")))
            .collect()
    };
    let unavailable = describe(ServiceState::Unavailable);
    if !unavailable.is_empty() {
        let mut detail = format!("not ready: {}", unavailable.join("; "));
        let degraded = describe(ServiceState::Degraded);
        if !degraded.is_empty() {
            detail.push_str(&format!("; degraded: {}", degraded.join("; ")));
        }
        return Err(ApiError::unavailable(detail, 1));
    }
    let status = if services.iter().all(|s| s.ready) {
        "ready"
    } else {
        "degraded"
    };
    Ok(HttpResponse::Ok().json(HealthStatus { status, services }))
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
