//! `/api/deploy` routes, backed by deploy-service. Not wired yet: the scope answers 404.

use actix_web::web;
use utoipa::OpenApi;

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi()]
pub struct DeployApi;

/// Registers the routes under `/api/deploy`.
pub fn configure_deploy(_cfg: &mut web::ServiceConfig) {}

/// Registers the routes under `/api/deployments`.
pub fn configure_deployments(_cfg: &mut web::ServiceConfig) {}
