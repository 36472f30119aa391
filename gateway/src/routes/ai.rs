//! `/api/ai` routes, backed by ai-service. Not wired yet: the scope answers 404.

use actix_web::web;
use utoipa::OpenApi;

/// This module's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi()]
pub struct AiApi;

/// Registers the routes of this module on the `/api/ai` scope.
pub fn configure(_cfg: &mut web::ServiceConfig) {}
