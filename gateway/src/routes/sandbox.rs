//! `/api/sandbox` routes, backed by sandbox-service. Not wired yet: the scope answers 404.

use actix_web::web;
use utoipa::OpenApi;

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi()]
pub struct SandboxApi;

/// Registers the routes of this module on the `/api/sandbox` scope.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
